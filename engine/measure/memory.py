"""RSS over many batches of varying shapes, per ONNX Runtime memory setting (the CPU arena and the
memory-pattern planner), to choose the default that keeps a long-running process flat, and on the
``openvino`` provider (where it is installed), which ``auto`` picks on CPUs with bf16.

    python -m engine.measure.memory --batches 200 --out docs/rss-curve.png [--json]

Each setting runs in its own process (RSS is per process); the batches are the same for every
setting: random batch sizes 1..16 and text lengths 4..200 tokens, seeded.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from engine import openvino_session

# name -> (provider, CPU arena, memory pattern); the arena settings are ONNX Runtime's and mean nothing to OpenVINO
SETTINGS = {"arena+pattern": ("cpu", True, True), "arena, no pattern": ("cpu", True, False),
            "no arena": ("cpu", False, False), "openvino": ("openvino", True, False)}


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_one(provider: str, arena: bool, pattern: bool, batches: int, model: str | None, seed: int = 7) -> list[float]:
    """RSS (MB) after each batch, in this process."""
    import numpy as np

    from engine.settings import load_settings
    from engine.studio import Studio

    studio = Studio(load_settings(cpu_mem_arena=arena, mem_pattern=pattern))
    embedder = studio.embedder(model, "fp32", provider).with_batching(32, 32 * 256)
    rng = np.random.default_rng(seed)
    words = "protein cell tumour growth insulin gene expression liver cohort mortality immune response".split()
    curve = []
    for _ in range(batches):
        size = int(rng.integers(1, 17))
        texts = [" ".join(rng.choice(words, size=int(rng.integers(2, 160)))) for _ in range(size)]
        embedder.embed(texts)
        curve.append(_rss_mb())
    return curve


def draw(curves: dict[str, list[float]], out: Path) -> None:
    """A plain line chart with Pillow (no plotting library in the engine's environment)."""
    from PIL import Image, ImageDraw

    width, height, margin = 900, 420, 60
    image = Image.new("RGB", (width, height), "white")
    pen = ImageDraw.Draw(image)
    values = [v for c in curves.values() for v in c]
    low, high = min(values) * 0.95, max(values) * 1.05
    count = max(len(c) for c in curves.values())
    colours = ["#2563eb", "#ea580c", "#16a34a", "#9333ea"]

    def point(i: int, v: float) -> tuple[float, float]:
        return (margin + i * (width - 2 * margin) / max(1, count - 1),
                height - margin - (v - low) * (height - 2 * margin) / max(1e-9, high - low))

    pen.rectangle([margin, margin, width - margin, height - margin], outline="#9ca3af")
    for k in range(5):
        v = low + k * (high - low) / 4
        y = point(0, v)[1]
        pen.line([margin - 4, y, margin, y], fill="#6b7280")
        pen.text((4, y - 6), f"{v:.0f}", fill="#374151")
    pen.text((margin, 20), "RSS (MB) after each batch; random batch sizes 1-16, lengths 4-200 tokens", fill="#111827")
    pen.text((width // 2 - 20, height - margin + 20), "batch", fill="#374151")
    for index, (name, curve) in enumerate(curves.items()):
        colour = colours[index % len(colours)]
        pen.line([point(i, v) for i, v in enumerate(curve)], fill=colour, width=2)
        pen.text((width - margin - 260, margin + 10 + 16 * index),
                 f"{name}: {curve[0]:.0f} -> {curve[-1]:.0f} MB (max {max(curve):.0f})", fill=colour)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.measure.memory")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--model")
    parser.add_argument("--out", type=Path, default=Path("docs/rss-curve.png"))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one setting, print its curve
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(*SETTINGS[args.one], args.batches, args.model)))
        return 0
    curves = {}
    for name, (provider, _, _) in SETTINGS.items():
        if provider == "openvino" and not openvino_session.is_installed():
            continue
        command = [sys.executable, "-m", "engine.measure.memory", "--one", name, "--batches", str(args.batches)]
        if args.model:
            command += ["--model", args.model]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        curves[name] = json.loads(done.stdout.strip().splitlines()[-1])
    draw(curves, args.out)
    # growth after warm-up: the last batch against the 20th (shapes seen once by then)
    summary = {name: {"first": c[0], "after_20": c[min(19, len(c) - 1)], "last": c[-1], "max": max(c),
                      "growth_after_20_pct": 100 * (c[-1] - c[min(19, len(c) - 1)]) / c[min(19, len(c) - 1)]}
               for name, c in curves.items()}
    print(json.dumps({"figure": str(args.out), "settings": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
