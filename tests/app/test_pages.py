"""AppTest smoke tests: every page runs without an exception and shows its key elements, on a temporary
data folder holding the converted default model. The engine under the pages is the real one: real
PDFs are ingested, searched, re-chunked and benchmarked; only the Hugging Face hub is switched off."""

from __future__ import annotations

import gc
import re
from pathlib import Path

import pytest
from conftest import ROOT, shared_data

streamlit_testing = pytest.importorskip("streamlit.testing.v1")
APP = str(ROOT / "app.py")
TIMEOUT = 180  # the CPU is shared; a cold page with a model load can take a while
SEARCH_PDF = "encrypted_rc4_dmca_18p.pdf"
QUERY = ("Title II establishes a procedure by which a copyright owner can obtain a subpoena from a federal court "
         "ordering a service provider to disclose the identity of a subscriber")
QUERY_PAGE = 9


def shared_studio():
    """The Studio every page of this process uses: the same cached entry the pages reach."""
    import streamlit as st

    from engine import ui

    return st.cache_resource(ui.create_studio)()


def open_page(page: str | None = None):
    at = streamlit_testing.AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def ok(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


@pytest.fixture(scope="module")
def engine(default_model):
    studio = shared_studio()
    assert studio.settings.models_dir == default_model.parent, "the cached Studio must use the test data folder"
    return studio


@pytest.fixture(scope="module")
def searchable(engine):
    """A collection with the 18-page DMCA summary, ingested by the engine the pages share."""
    from engine import pipeline

    result = pipeline.ingest(engine, "apptest-search", shared_data("pdfs", SEARCH_PDF))
    assert result.ok and result.pages == 18
    return "apptest-search"


def test_home_shows_hardware_the_provider_that_runs_and_collections(engine):
    at = open_page()
    assert texts(at.title) == ["ONNX Embedding Studio"]
    assert {"Hardware", "Default model", "Collections", "Try it"} <= set(texts(at.subheader))
    # the default variant is auto: on a CPU host it runs on ONNX Runtime or OpenVINO, whichever its probe found faster
    assert any(re.match(r"Really runs on \*\*(cpu|openvino)\*\*", s) for s in texts(at.success)), texts(at.success)
    providers_table = at.dataframe[0].value
    assert "cpu" in set(providers_table["provider"]) and bool(providers_table.set_index("provider").loc["cpu", "available"])
    assert any(str(engine.settings.data_dir) in c for c in texts(at.sidebar.caption))
    assert any(re.fullmatch(r"384 dimensions in [\d.]+ (ms|s) on (cpu|openvino)", c) for c in texts(at.caption)), \
        texts(at.caption)


def test_one_studio_and_one_session_cache_per_process(engine, searchable):
    from engine.studio import Studio

    def live() -> set[int]:
        gc.collect()
        return {id(o) for o in gc.get_objects() if isinstance(o, Studio)}

    before = live()
    at = open_page()
    for page in ("pages/1_Models.py", "pages/2_Documents.py", "pages/3_Chunks.py", "pages/4_Search.py",
                 "pages/5_Benchmarks.py"):
        at.switch_page(page).run()
        ok(at)
    assert live() == before, "a page built its own Studio instead of using the cached one"
    assert shared_studio() is engine
    assert any(e.key.model == "all-minilm-l6-v2" for e in engine.sessions.entries())


def test_models_page_lists_the_registry_and_says_when_the_hub_is_offline(engine):
    at = open_page("pages/1_Models.py")
    registry = at.dataframe[0].value.set_index("model")
    assert bool(registry.loc["all-minilm-l6-v2", "converted"]) and registry.loc["all-minilm-l6-v2", "dim"] == 384
    assert registry.loc["all-minilm-l6-v2", "fp32 parity"].startswith("min cos ")
    assert not bool(registry.loc["bge-small-en-v1.5", "converted"])
    at.button(key="FormSubmitter:hub_search-Search the hub").click().run()
    ok(at)
    assert any(i.startswith("**Offline.**") and "HF_HUB_OFFLINE" in i for i in texts(at.info)), texts(at.info)
    # a conversion request the engine refuses is a readable error, not an exception
    at.selectbox(key="convert_model").select("another model (Hugging Face id or local folder)")
    at.text_input(key="convert_source_input").input("no-such-model")
    at.button(key="FormSubmitter:convert-Convert").click().run()
    ok(at)
    assert any("Unknown model 'no-such-model'" in e and "What to do:" in e for e in texts(at.error)), texts(at.error)


@pytest.mark.slow
def test_models_page_converts_a_model_out_of_process_and_deletes_it(engine, tmp_path):
    from tiny_models import TinySpec, build

    source = build(TinySpec("bert"), tmp_path / "tiny-st")
    at = open_page("pages/1_Models.py")
    at.selectbox(key="convert_model").select("another model (Hugging Face id or local folder)")
    at.text_input(key="convert_source_input").input(str(source))
    at.text_input(key="convert_name").input("tiny-app")
    at.multiselect(key="convert_variants").set_value(["fp32"])
    at.button(key="FormSubmitter:convert-Convert").click().run()
    ok(at)
    assert any(s.startswith("Converted **tiny-app**") and "fp32: min cos" in s for s in texts(at.success)), texts(at.success)
    folder = engine.settings.models_dir / "tiny-app"
    assert (folder / "manifest.json").is_file() and engine.registry.get("tiny-app").converted
    assert "tiny-app" in set(at.dataframe[0].value["model"])
    # and delete it again through the page
    at.selectbox(key="delete_model").select("tiny-app")
    at.checkbox[-1].check()
    at.button(key="FormSubmitter:delete-Delete").click().run()
    ok(at)
    assert any(s.startswith("Deleted **tiny-app**") for s in texts(at.success)), texts(at.success)
    assert not folder.exists() and "tiny-app" not in engine.registry.names()
    assert (engine.settings.models_dir / "all-minilm-l6-v2" / "manifest.json").is_file()


def test_documents_page_ingests_uploads_reports_bad_files_and_deletes(engine):
    at = open_page("pages/2_Documents.py")
    assert texts(at.title) == ["Documents"]
    ocr_choices = at.selectbox(key="ocr_engine").options
    assert {"auto", "text", "tesseract", "rapidocr"} <= set(ocr_choices)
    assert {"mistral (unavailable)", "deepseek-ocr (unavailable)", "hunyuan-ocr (unavailable)"} <= set(ocr_choices)
    at.selectbox(key="documents_collection").select("+ new collection")
    at.run()
    at.text_input(key="new_collection").input("apptest-docs")
    files = [(name, shared_data("pdfs", name).read_bytes(), "application/pdf")
             for name in ("table_small.pdf", "arabic_habibi_rotated.pdf", "not_a_pdf_oops.pdf", "zero_pages.pdf")]
    at.get("file_uploader")[0].set_value(files)
    at.run()
    ingest = next(b for b in at.button if b.label.startswith("Ingest 4 file"))
    ingest.click().run()
    ok(at)
    for state in engine.jobs.running():  # the ingest is a background job of the Studio: let it finish
        engine.jobs.wait(state.id, timeout=300)
    at.run()
    ok(at)
    assert any(s.startswith("Ingested **table_small.pdf**: 1 page,") for s in texts(at.success)), texts(at.success)
    errors = texts(at.error)
    assert any(e.startswith("not_a_pdf_oops.pdf:") and "not a PDF" in e for e in errors), errors
    assert any(e.startswith("zero_pages.pdf:") and "no pages" in e for e in errors), errors
    assert at.selectbox(key="documents_collection").value == "apptest-docs"  # the new collection is now selected
    assert sorted(at.dataframe[-1].value["document"]) == ["arabic_habibi_rotated.pdf", "table_small.pdf"]
    from engine import pipeline

    stored = {d.name: d.doc_id for d in pipeline.collection(engine, "apptest-docs").info().documents}
    at.selectbox(key="documents_doc").select(stored["table_small.pdf"]).run()
    assert [i.captions for i in at.get("image")] == [["page 1"]]  # the page thumbnail
    # delete the document again: the confirmation is used up, so the document selected next is not deleted by a
    # second click (one confirmation for all documents stayed ticked, and it was)
    at.checkbox(key=f"confirm_delete_{stored['table_small.pdf']}").check().run()
    next(b for b in at.button if b.label == "Delete document").click().run()
    ok(at)
    assert any(s.startswith("Deleted **table_small.pdf**") for s in texts(at.success))
    assert at.selectbox(key="documents_doc").value == stored["arabic_habibi_rotated.pdf"]
    assert not at.checkbox(key=f"confirm_delete_{stored['arabic_habibi_rotated.pdf']}").value
    assert next(b for b in at.button if b.label == "Delete document").disabled
    assert [d.name for d in pipeline.collection(engine, "apptest-docs").info().documents] == ["arabic_habibi_rotated.pdf"]


def test_search_page_finds_the_page_of_a_sentence_and_shows_latency(engine, searchable):
    at = open_page("pages/4_Search.py")
    at.selectbox(key="search_collection").select(searchable)
    at.run()
    at.text_input(key="search_query").input(QUERY)
    at.button(key="FormSubmitter:search-Search").click().run()
    ok(at)
    headings = [m for m in texts(at.markdown) if m.startswith("#### ")]
    assert headings[0] == f"#### 1. {SEARCH_PDF} — page {QUERY_PAGE}", headings
    metrics = {m.label: m.value for m in at.metric}
    assert re.fullmatch(r"[\d.]+ (ms|s)", metrics["Query latency"]) and metrics["Ran on"] == "cpu"
    fragments = [h.value for h in at.get("html")]
    assert any('<mark class="studio-hit"' in f and "subpoena" in f for f in fragments)
    assert [i.captions for i in at.get("image")][0] == [f"{SEARCH_PDF}, page {QUERY_PAGE}"]  # the page image
    # an empty query is a readable error
    at.text_input(key="search_query").input("")
    at.button(key="FormSubmitter:search-Search").click().run()
    ok(at)
    errors = texts(at.error)  # a readable error, with what to do
    assert any(e.startswith("The query is empty.") and "**What to do:** type a question" in e for e in errors), errors


def test_chunks_page_shows_boundaries_and_applies_a_previewed_rechunk(engine, searchable):
    from engine import pipeline

    at = open_page("pages/3_Chunks.py")
    at.selectbox(key="chunks_collection").select(searchable)
    at.run()
    ok(at)
    metrics = {m.label: m.value for m in at.metric}
    stored = pipeline.collection(engine, searchable).info().documents[0].chunks
    assert metrics["Chunks"] == str(stored)
    assert len(at.get("plotly_chart")) == 1  # the token histogram
    assert any('class="studio-chunk"' in h.value for h in at.get("html"))
    assert any('class="studio-overlap"' in h.value for h in at.get("html"))  # it opens on a page with overlap
    at.number_input(key="rechunk_size").set_value(96)
    at.number_input(key="rechunk_overlap").set_value(12)
    at.button(key="FormSubmitter:rechunk-Preview").click().run()
    ok(at)
    preview = next(m for m in texts(at.markdown) if m.startswith("**Preview**"))
    planned = int(re.search(r"→ \*\*(\d+)\*\* chunks", preview).group(1))
    assert planned > stored and pipeline.collection(engine, searchable).info().documents[0].chunks == stored
    next(b for b in at.button if b.label.startswith("Apply")).click().run()
    ok(at)
    assert any(s.startswith(f"Re-chunked **{SEARCH_PDF}**: {planned} chunks") for s in texts(at.success))
    assert pipeline.collection(engine, searchable).info().documents[0].chunks == planned


def test_benchmarks_page_shows_the_shipped_side_by_side_report_before_any_run(engine):
    shipped = sorted((ROOT / "docs" / "reports").glob("bench-*.json"))
    assert shipped, "the project ships a side-by-side report (docs/reports)"
    assert not list(Path(engine.settings.reports_dir / "bench").glob("bench-*.json"))  # first open: none of our own
    at = open_page("pages/5_Benchmarks.py")
    ok(at)
    assert at.selectbox[0].value.startswith("shipped: ")
    assert any("shipped with the project" in c for c in texts(at.caption))
    # what the report recorded (batch, rounds), not a mean length it never had ("0 characters on average")
    assert any(re.search(r"batch \d+, best of \d+ rounds · parity", c) for c in texts(at.caption))
    from engine.measure.bench import load_report

    report = load_report(shipped[-1])
    workloads = {r.workload for r in report.results}
    assert len(at.get("plotly_chart")) == len(workloads)  # one throughput chart per workload
    table = at.dataframe[-1].value
    assert {"st-torch", "ours fp32"} <= set(table["label"]) and "parity" in table.columns


def test_benchmarks_page_runs_charts_and_saves_a_report(engine):
    at = open_page("pages/5_Benchmarks.py")
    at.multiselect(key="bench_variants").set_value(["fp32", "int8"])
    at.multiselect(key="bench_providers").set_value(["cpu"])
    at.text_input(key="bench_batches").input("8")
    at.number_input(key="bench_texts").set_value(16)
    at.button(key="FormSubmitter:bench-Run benchmark").click().run()
    ok(at)
    assert not texts(at.error) and not texts(at.warning)
    assert len(at.get("plotly_chart")) == 2  # throughput and latency; no baseline, so no speed-up chart
    table = at.dataframe[-1].value
    assert list(table["label"]) == ["onnxruntime fp32 · cpu · batch 8", "onnxruntime int8 · cpu · batch 8"]
    assert (table["texts/s"] > 0).all() and table.loc[0, "min cosine"] == pytest.approx(1.0, abs=1e-6)
    saved = Path(engine.settings.reports_dir / "bench")
    assert at.selectbox[0].value in {p.name for p in saved.glob("bench-*.json")}
    assert len(at.get("download_button")) == 2
