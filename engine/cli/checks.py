"""``python -m engine check``: validate every converted model (backs scripts/check-models.sh).

Exit status 0 when every converted model passes (warnings allowed), 1 when any fails;
models that are not converted are listed and skipped.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict

from engine.cli import _studio, _table, command
from engine.cli import args as cliargs


def _check_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", action="append", dest="models", help="check only this model (repeatable)")
    p.add_argument("--provider", help="auto, cpu, cuda, ... (default: STUDIO_PROVIDER or auto); a named GPU provider "
                                      "that falls back to the CPU fails the check")
    p.add_argument("--variants", type=cliargs.variant_list, help="comma list: check only these variants")
    p.add_argument("--no-load", action="store_true", help="files and parity figures only; do not load the ONNX files")


def _figure(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def _rows(results) -> list[list[str]]:
    rows = []
    for model in results:
        if not model.variants:
            rows.append([model.name, "-", model.status.upper(), "-", "-", "-", "-", "; ".join(model.problems)])
            continue
        for check in model.variants:
            ran = check.provider or "-"
            if check.provider and check.provider != check.provider_requested and check.provider_requested != "auto":
                ran = f"{check.provider} (asked {check.provider_requested})"
            rows.append([
                model.name, check.variant, check.status.upper(), ran,
                _figure(check.max_abs_diff, ".2e"), _figure(check.min_cosine, ".7f"),
                _figure(check.load_seconds, ".2f"), "; ".join(check.problems + check.notes),
            ])
    return rows


@command("check", "validate converted models: files, ONNX loads and runs, provider, parity thresholds", _check_args)
def cmd_check(args: argparse.Namespace) -> tuple[object, str]:
    from engine import checks

    studio = _studio(args)
    results = checks.check_models(studio, args.models, args.provider, args.variants, load=not args.no_load)
    counts = checks.summary(results)
    failed = counts[checks.FAIL] > 0
    args.exit_status = 1 if failed else 0
    data = {
        "ok": not failed,
        "summary": counts,
        "thresholds": {k: asdict(v) for k, v in checks.THRESHOLDS.items()},
        "models": [asdict(r) for r in results],
    }
    table = _table(_rows(results), ["model", "variant", "status", "provider", "max|diff|", "min cosine", "load s", "notes"])
    verdict = "FAILED" if failed else "all converted models pass"
    footer = (f"{verdict}: {counts[checks.OK]} ok, {counts[checks.WARN]} warn, {counts[checks.FAIL]} failed, "
              f"{counts[checks.SKIP]} skipped (not converted)\n"
              "thresholds: fp32/optimized max|diff| <= 1e-5 and min cosine >= 0.99999; fp16 min cosine >= 0.999; "
              "int8 reported")
    return data, f"{table}\n\n{footer}"
