"""This project's engine as a benchmark worker, with the same pipe protocol as ``runner.py``, so
that it runs in its own process like every peer (its RSS is its own) and rounds interleave.

    python -m engine.measure.peer_env.ours --model M --variant V --provider P --threads N
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from engine.measure.peer_env.runner import serve


class Ours:
    def __init__(self, model: str, variant: str, provider: str) -> None:
        self.model, self.variant, self.provider = model, variant, provider
        self.info: dict[str, object] = {}
        self._embedder = None

    def load(self) -> None:
        from engine.studio import Studio

        studio = Studio()
        shared = studio.embedder(self.model, self.variant, self.provider)
        self._embedder = shared.with_batching(None, None)
        info = self._embedder.info()
        self.info = {"library": "onnx-embedding-studio", "provider": info["provider"], "variant": self.variant,
                     "fallback": info["fallback"], "max_seq_length": info["max_seq_length"]}

    def run(self, texts: list[str], batch_size: int) -> tuple[float, list[float], np.ndarray]:
        from engine.measure.bench import timed_batches, with_bench_batching

        return timed_batches(with_bench_batching(self._embedder, batch_size).embed, texts, batch_size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.measure.peer_env.ours")
    parser.add_argument("--model", required=True)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--provider", default="cpu")
    args = parser.parse_args(argv)
    from engine.log import configure

    configure(level="WARNING")
    return serve(Ours(args.model, args.variant, args.provider))


if __name__ == "__main__":
    sys.exit(main())
