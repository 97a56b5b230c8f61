"""CLI: bench — ONNX Runtime vs the PyTorch baseline vs OpenAI-compatible servers."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.cli import _studio, _table, command
from engine.cli import args as cliargs
from engine.measure.peer_env import PEERS
from engine.measure.peers import DEFAULT_CONFIGS, WORKLOADS


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", help="comma list (default: the registry default)")
    p.add_argument("--variants", type=cliargs.variant_list, default="fp32,int8", help="comma list (default fp32,int8)")
    p.add_argument("--providers", default="auto", help="comma list (default auto)")
    p.add_argument("--batch-sizes", type=cliargs.int_list(1, 4096), default="1,32", help="comma list (default 1,32)")
    p.add_argument("--workload", default="sentences", help="'sentences' or a corpus.jsonl / .txt path")
    p.add_argument("--texts", type=cliargs.positive_int, default=256, help="number of texts (default 256)")
    p.add_argument("--baseline", action="store_true", help="also run sentence-transformers (torch) as the baseline")
    p.add_argument("--vllm-url", action="append", default=[], help="an OpenAI-compatible server to include (repeatable)")
    p.add_argument("--vllm-model", help="model name to send to that server")
    p.add_argument("--out", type=Path, help="report folder (default: <data dir>/reports/bench)")
    p.add_argument("--peers", type=cliargs.choice_list(PEERS),
                   help="side by side with peer libraries, each in its own process and environment "
                        f"(.venv-peers, created on first use): {','.join(PEERS)}")
    p.add_argument("--configs", type=cliargs.config_list, help="with --peers: our configurations as VARIANT[:PROVIDER] "
                                                               f"(default {','.join(DEFAULT_CONFIGS)})")
    p.add_argument("--workloads", type=cliargs.choice_list(WORKLOADS), default=",".join(WORKLOADS),
                   help="with --peers: scifact-queries (300) and/or scifact-abstracts (256)")
    p.add_argument("--rounds", type=cliargs.positive_int, default=3, help="with --peers: timed rounds per backend (best kept)")


@command("bench", "benchmark ONNX Runtime vs PyTorch vs vLLM/HTTP servers, with parity", _bench_args)
def cmd_bench(args: argparse.Namespace) -> tuple[object, str]:
    from engine.measure.bench import run_benchmark, save_report, workload_texts

    studio = _studio(args)
    split = lambda value: [v.strip() for v in value.split(",") if v.strip()]  # noqa: E731
    if args.peers:
        return _side_by_side(studio, args, split)
    models = split(args.models) if args.models else [studio.registry.default_model]
    texts = workload_texts(args.workload, args.texts)
    report = run_benchmark(studio, models, args.variants, split(args.providers), args.batch_sizes, texts, baseline=args.baseline,
                           http_urls=args.vllm_url, http_model=args.vllm_model, workload=args.workload)
    json_path, csv_path = save_report(report, args.out or studio.settings.reports_dir / "bench")
    rows = [[r.backend, r.model, r.variant, r.provider, str(r.batch_size),
             f"{r.texts_per_second:.1f}" if not r.error else "error", f"{r.latency_ms_p50:.1f}", f"{r.latency_ms_p99:.1f}",
             f"{r.speedup_vs_baseline:.2f}x" if r.speedup_vs_baseline else "-",
             f"{r.min_cosine:.6f}" if r.min_cosine is not None else "-"] for r in report.results]
    text = _table(rows, ["backend", "model", "variant", "provider", "batch", "texts/s", "p50 ms", "p99 ms",
                         "vs torch", "min cos"])
    errors = [f"{r.backend} {r.variant} {r.provider}: {r.error}" for r in report.results if r.error]
    footer = f"\n{len(texts)} texts ({args.workload}); reference: {report.reference}\nreport: {json_path}\n        {csv_path}"
    return {**report.to_dict(), "json": str(json_path), "csv": str(csv_path)}, text + footer + "".join(
        f"\nerror: {e}" for e in errors)


def _side_by_side(studio, args: argparse.Namespace, split) -> tuple[object, str]:
    from engine.measure.bench import save_report
    from engine.measure.peers import OurConfig, markdown, run_side_by_side

    model = split(args.models)[0] if args.models else studio.registry.default_model
    if args.configs:
        configs = args.configs
    else:  # the default rows this installation can run (the openvino ones need the openvino package; a folder
        # converted before int8-static existed has no such file)
        from engine import providers

        present = providers.available()
        manifest = studio.registry.get(model).manifest
        converted = manifest.variants if manifest is not None else {}
        configs = [c for c in map(OurConfig.parse, DEFAULT_CONFIGS)
                   if c.provider in present and (not converted or c.variant in converted)]
    batch = args.batch_sizes[-1]  # the default "1,32" gives 32
    report = run_side_by_side(studio, model, args.peers, configs, args.workloads, batch_size=batch, rounds=args.rounds)
    json_path, csv_path = save_report(report, args.out or studio.settings.reports_dir / "bench")
    md_path = json_path.with_suffix(".md")
    text = markdown(report)
    md_path.write_text(text + "\n", encoding="utf-8")
    footer = f"\nreport: {json_path}\n        {csv_path}\n        {md_path}"
    return {**report.to_dict(), "json": str(json_path), "csv": str(csv_path), "markdown": str(md_path)}, text + footer
