"""Benchmarks: run providers x variants x batch sizes (and the sentence-transformers baseline) from the
page, chart throughput, latency percentiles and speed-up with the parity of every row, and load or
export saved reports."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from app import guarded, page_setup, show_error
from engine import conversion, providers, ui
from engine.errors import InputError, StudioError
from engine.measure import bench
from engine.settings import REPO_ROOT

studio = page_setup()
st.title("Benchmarks")
reports_dir = studio.settings.reports_dir / "bench"
# measured side by side on the project's reference machine and shipped with it, so that a newcomer
# sees how the engine compares before running anything (docs/benchmarks.md explains them)
SHIPPED_DIR = REPO_ROOT / "docs" / "reports"
BACKEND_COLOURS = {"onnxruntime": "#2563eb", "torch": "#ea580c", "openai-http": "#16a34a", "ours": "#2563eb",
                   "peers": "#ea580c"}


def family(backend: str) -> str:
    """Colour group: this engine's rows against the peer libraries'."""
    if backend.startswith("ours"):
        return "ours"
    if backend.startswith("st-") or backend == "fastembed":
        return "peers"
    return backend


def side_by_side_rows(report) -> list[dict]:
    """ui.bench_rows plus the workload; side-by-side rows are labelled by backend."""
    rows = ui.bench_rows(report)
    for row, result in zip(rows, report.results):
        row["workload"] = result.workload
        if result.workload:
            row["label"], row["backend"] = result.backend, family(result.backend)
    return rows


def bar_chart(rows: list[dict], value: str, title: str, axis: str, reference_line: float | None = None) -> go.Figure:
    figure = go.Figure()
    for backend in dict.fromkeys(r["backend"] for r in rows):
        part = [r for r in rows if r["backend"] == backend]
        figure.add_bar(x=[r["label"] for r in part], y=[r[value] for r in part], name=backend,
                       marker_color=BACKEND_COLOURS.get(backend), text=[r["parity"] for r in part],
                       textposition="outside", textfont=dict(size=11), cliponaxis=False,
                       hovertemplate="%{x}<br>" + axis + ": %{y}<br>parity: %{text}<extra></extra>")
    if reference_line is not None:
        figure.add_hline(y=reference_line, line_dash="dash", line_color="#6b7280", annotation_text="baseline")
    figure.update_layout(title=title, yaxis_title=axis, height=440, margin=dict(l=10, r=10, t=80, b=10),
                         legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1))
    return figure


def latency_chart(rows: list[dict]) -> go.Figure:
    figure = go.Figure()
    for column, colour in (("p50 ms", "#93c5fd"), ("p90 ms", "#3b82f6"), ("p99 ms", "#1e3a8a")):
        figure.add_bar(x=[r["label"] for r in rows], y=[r[column] for r in rows], name=column.split()[0],
                       marker_color=colour, hovertemplate="%{x}<br>" + column + ": %{y}<extra></extra>")
    figure.update_layout(title="Latency per batch (percentiles)", yaxis_title="ms per batch", barmode="group", height=440,
                         margin=dict(l=10, r=10, t=80, b=10),
                         legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1))
    return figure


# --- run one ------------------------------------------------------------------------------------------------
converted = [s for s in studio.registry.list() if s.converted]
if not converted:
    st.warning("No converted model yet: convert one on the **Models** page.", icon=":material/build:")
    st.stop()
variants_known = list(dict.fromkeys(v for s in converted for v in s.manifest.variants))
baseline_ready = conversion.converter_installed()
with st.form("bench"):
    first, second = st.columns(2)
    names = [s.name for s in converted]
    default_model = studio.registry.default_model if studio.registry.default_model in names else names[0]
    models = first.multiselect("Models", names, default=[default_model], key="bench_models")
    variants = first.multiselect("Variants", variants_known, default=[v for v in ("fp32", "int8") if v in variants_known],
                                 key="bench_variants")
    chosen_providers = second.multiselect("Providers", ui.provider_choices(providers.status())[1:], default=["cpu"],
                                         key="bench_providers")
    batch_text = second.text_input("Batch sizes", "1,32", key="bench_batches")
    third, fourth = st.columns(2)
    workload = third.text_input("Workload", "sentences",
                                help="'sentences' (short built-in texts) or a path to a BEIR corpus.jsonl / a .txt file")
    count = fourth.number_input("Texts", min_value=8, max_value=20000, value=128, step=64, key="bench_texts")
    baseline = st.checkbox("Include the sentence-transformers (PyTorch) baseline, in its own process",
                           value=False, disabled=not baseline_ready,
                           help=None if baseline_ready else "torch and sentence-transformers are not installed here")
    urls = st.text_area("OpenAI-compatible embedding servers to include (one URL per line, e.g. a vLLM server)", "")
    http_model = st.text_input("Model name to send to those servers (default: the studio model name)", "")
    run_clicked = st.form_submit_button("Run benchmark", type="primary")
if run_clicked:
    try:
        batch_sizes = ui.parse_batch_sizes(batch_text)
        if not models or not variants or not chosen_providers:
            raise InputError("Pick at least one model, one variant and one provider.")
        texts = bench.workload_texts(workload.strip() or "sentences", int(count))
        with st.status("Benchmarking…", expanded=True) as status:
            bar = st.progress(0.0, text="starting")
            report = bench.run_benchmark(
                studio, models, variants, chosen_providers, batch_sizes, texts, baseline=baseline and baseline_ready,
                http_urls=[u.strip() for u in urls.splitlines() if u.strip()], http_model=http_model.strip() or None,
                progress=lambda step, fraction: bar.progress(min(1.0, max(0.0, fraction)), text=step),
                workload=workload.strip() or "sentences")
            json_path, _ = bench.save_report(report, reports_dir)
            status.update(label=f"Done: {len(report.results)} rows, saved as {json_path.name}", state="complete",
                          expanded=False)
        st.session_state["bench_report"] = json_path.name
    except StudioError as exc:
        show_error(exc)

# --- saved reports -------------------------------------------------------------------------------------------
st.divider()
saved = bench.list_reports(reports_dir)
shipped = sorted(SHIPPED_DIR.glob("bench-*.json"), reverse=True) if SHIPPED_DIR.is_dir() else []
if not saved and not shipped:
    st.info("No saved report yet: run a benchmark above (reports are saved under the data folder).", icon=":material/inbox:")
    st.stop()
choices = {p.name: p for p in saved} | {f"shipped: {p.name}": p for p in shipped}
names = list(choices)
wanted = st.session_state.get("bench_report")
if not saved:
    st.caption("No report of your own yet: showing the one shipped with the project (measured on its reference "
               "machine; docs/benchmarks.md). Run one above to compare on this machine.")
picked = st.selectbox("Report", names, index=names.index(wanted) if wanted in names else 0)
with guarded("Loading the report"):
    report = bench.load_report(choices[picked])
    env = report.environment
    st.caption(f"{report.created_at} · {env.get('cpu', '?')} ({env.get('cpu_threads', '?')} threads), "
               f"ONNX Runtime {env.get('onnxruntime', '?')}, load average {env.get('load_average', 0):.2f} · "
               f"{ui.workload_text(report.workload)} · parity against {report.reference}")
    side = side_by_side_rows(report)
    workloads = [w for w in dict.fromkeys(r["workload"] for r in side) if w]
    for workload in workloads:  # a side-by-side report: one throughput chart per workload
        part = [r for r in side if r["workload"] == workload and not r["error"]]
        for row in side:
            if row["workload"] == workload and row["error"]:
                st.warning(f"{workload} · {row['label']}: {row['error']}", icon=":material/error:")
        if part:
            st.plotly_chart(bar_chart(part, "texts/s", f"{workload}: throughput (parity against {report.reference} "
                                      "above each bar)", "texts per second"), width="stretch")
    if workloads:
        st.dataframe(side, hide_index=True, width="stretch")
        stem = picked.removeprefix("shipped: ").removesuffix(".json")
        csv_column, json_column = st.columns(2)
        csv_column.download_button("Export CSV", ui.report_csv(report), file_name=f"{stem}.csv", mime="text/csv")
        json_column.download_button("Export JSON", ui.report_json(report), file_name=f"{stem}.json",
                                    mime="application/json")
        st.stop()
    rows = ui.bench_rows(report)
    good = [r for r in rows if not r["error"]]
    for row in rows:
        if row["error"]:
            st.warning(f"{row['label']}: {row['error']}", icon=":material/error:")
    if good:
        st.plotly_chart(bar_chart(good, "texts/s", "Throughput (parity above each bar)", "texts per second"), width="stretch")
        st.plotly_chart(latency_chart(good), width="stretch")
        with_speedup = [r for r in good if r["speed-up"] is not None]
        if with_speedup:
            st.plotly_chart(bar_chart(with_speedup, "speed-up", "Speed-up against the sentence-transformers baseline",
                                      "× baseline", reference_line=1.0), width="stretch")
        else:
            st.caption("No speed-up chart: this report has no sentence-transformers baseline (tick it above).")
    st.dataframe(rows, hide_index=True, width="stretch")
    csv_column, json_column = st.columns(2)
    stem = picked.removeprefix("shipped: ").removesuffix(".json")
    csv_column.download_button("Export CSV", ui.report_csv(report), file_name=f"{stem}.csv", mime="text/csv")
    json_column.download_button("Export JSON", ui.report_json(report), file_name=f"{stem}.json", mime="application/json")
