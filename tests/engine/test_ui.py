"""engine.ui: the pure helpers behind the Streamlit pages (no streamlit needed to test them)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from engine import ui
from engine.errors import InputError, ModelNotFoundError
from engine.measure.bench import CSV_FIELDS, BenchReport, BenchResult
from engine.pipeline import ProgressEvent


class _Collector(HTMLParser):
    """Text and tags of an HTML fragment, to check what a browser would show."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[tuple[str, dict]] = []
        self.marked: list[str] = []
        self._in_mark = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_mark += tag == "mark"

    def handle_endtag(self, tag):
        self._in_mark -= tag == "mark"

    def handle_data(self, data):
        self.text.append(data)
        if self._in_mark:
            self.marked.append(data)


def _parse(fragment: str) -> _Collector:
    parser = _Collector()
    parser.feed(fragment)
    parser.close()
    return parser


# --- segments and highlighting ----------------------------------------------------------------------------
def test_segments_cover_the_text_once_and_know_their_spans():
    pieces = ui.segments(20, [(0, 8), (5, 12), (15, 30), (9, 3)])
    assert [(p.start, p.end) for p in pieces] == [(0, 5), (5, 8), (8, 12), (12, 15), (15, 20)]
    assert [p.covers for p in pieces] == [(0,), (0, 1), (1,), (), (2,)]  # (9, 3) is inverted: covers nothing
    assert ui.segments(0, [(0, 5)]) == []


def test_hit_is_escaped_and_marked_exactly():
    text = "Intro <script>alert('x')</script> & then the answer: 42 < 43 \"quoted\" and more."
    start = text.index("the answer")
    end = text.index(" and more")
    fragment = ui.highlight_hit(text, start, end, context=None)
    assert "<script>" not in fragment and "&lt;script&gt;" in fragment
    parsed = _parse(fragment)
    assert "".join(parsed.text) == text  # nothing lost, nothing added (no window, so no ellipsis)
    assert "".join(parsed.marked) == text[start:end]
    assert [tag for tag, _ in parsed.tags] == ["div", "mark"]


def test_hit_window_cuts_at_word_boundaries_and_says_so():
    words = " ".join(f"word{i}" for i in range(400))
    start = words.index("word200")
    end = start + len("word200")
    left, right = ui.hit_window(words, start, end, context=50)
    assert 0 < left < start and end < right < len(words)
    assert words[left - 1] == " " and words[right] == " "
    shown = "".join(_parse(ui.highlight_hit(words, start, end, context=50)).text)
    assert shown.startswith("… word") and shown.endswith(" …") and "word200" in shown
    assert ui.hit_window(words, start, end, context=None) == (0, len(words))


def test_hit_offsets_outside_the_text_are_clamped():
    parsed = _parse(ui.highlight_hit("short text", 6, 999, context=None))
    assert "".join(parsed.marked) == "text"


def test_reflow_keeps_length_and_paragraphs():
    text = "line one\nline two\n\nnew paragraph\nend"
    flowed = ui.reflow(text)
    assert len(flowed) == len(text)
    assert flowed == "line one line two\n\nnew paragraph end"


def test_chunk_boundaries_show_every_chunk_its_start_and_the_overlap():
    text = "Alpha beta gamma. Delta <b>epsilon</b> zeta. Eta theta iota."
    first = (0, text.index(" Eta"), 0)
    second = (text.index("Delta"), len(text), 1)
    fragment = ui.chunk_boundaries_html(text, [first, second])
    parsed = _parse(fragment)
    assert "<b>" not in fragment  # page text is escaped, not rendered
    shown = "".join(parsed.text)
    assert shown == "#0" + text[: second[0]] + "#1" + text[second[0]:]
    overlap = [attrs for tag, attrs in parsed.tags if attrs.get("class") == "studio-overlap"]
    assert len(overlap) == 1 and "chunks #0, #1" in overlap[0]["title"]
    overlap_text = re.search(r'class="studio-overlap"[^>]*>([^<]*)<', fragment).group(1)
    assert overlap_text == "Delta &lt;b&gt;epsilon&lt;/b&gt; zeta."
    chunk_spans = [attrs for tag, attrs in parsed.tags if attrs.get("class") == "studio-chunk"]
    assert {a["title"] for a in chunk_spans} == {"chunk #0", "chunk #1"}


def test_text_outside_every_chunk_is_shown_greyed():
    fragment = ui.chunk_boundaries_html("head body tail", [(5, 9, 3)])
    assert "".join(_parse(fragment).text) == "head #3body tail"
    assert 'color:#888">head </span>' in fragment


# --- chunk statistics ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Chunk:
    index: int
    page: int
    start: int
    end: int
    tokens: int
    text: str = "x"
    heading_path: tuple[str, ...] = ()


CHUNKS = [_Chunk(0, 1, 0, 100, 50), _Chunk(1, 1, 80, 200, 60), _Chunk(2, 2, 0, 90, 40), _Chunk(3, 2, 60, 120, 30)]


def test_overlaps_are_per_page():
    assert ui.chunk_overlaps(CHUNKS) == [0, 20, 0, 30]
    as_dicts = [{**c.__dict__, "heading_path": list(c.heading_path)} for c in CHUNKS]
    assert ui.chunk_overlaps(as_dicts) == [0, 20, 0, 30]  # stored chunks are dicts


def test_chunk_stats_and_rows():
    stats = ui.chunk_stats(CHUNKS)
    assert (stats.count, stats.pages, stats.min_tokens, stats.max_tokens) == (4, 2, 30, 60)
    assert stats.mean_tokens == pytest.approx(45.0)
    assert (stats.overlapping, stats.mean_overlap_chars) == (2, pytest.approx(25.0))
    assert ui.chunk_stats([]).count == 0
    rows = ui.chunk_rows(CHUNKS)
    assert [r["overlap chars"] for r in rows] == [0, 20, 0, 30]
    assert ui.telling_page(CHUNKS, fallback=7) == 1
    assert ui.telling_page(CHUNKS, fallback=7, min_overlap=25) == 2
    assert ui.telling_page([], fallback=7) == 7


def test_histogram_counts_every_value():
    bins = ui.histogram([1, 2, 2, 3, 10], bins=3)
    assert sum(b["count"] for b in bins) == 5
    assert bins[0]["start"] == 1 and bins[-1]["end"] == 10
    assert ui.histogram([], bins=3) == []


# --- ingestion progress ---------------------------------------------------------------------------------
def test_ingest_fraction_only_moves_forward():
    events = [ProgressEvent("open", "f"), *[ProgressEvent("page", "f", i, 4) for i in range(1, 5)],
              ProgressEvent("chunk", "f", 9, 9), *[ProgressEvent("embed", "f", i, 9) for i in (3, 6, 9)],
              ProgressEvent("store", "f"), ProgressEvent("done", "f", 4, 4)]
    fractions = [ui.ingest_fraction(e) for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and fractions[0] < 0.05
    assert ui.describe_event(ProgressEvent("page", "a.pdf", 2, 4, "page 2: text")) == "a.pdf: page 2/4 — page 2: text"


# --- models ---------------------------------------------------------------------------------------------
def _fake_model(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text("{}")
    (folder / "model.onnx").write_bytes(b"\0" * 10)
    return folder


def test_delete_model_folder_removes_only_a_converted_model(tmp_path):
    models = tmp_path / "models"
    keep = _fake_model(models, "keep-me")
    doomed = _fake_model(models, "doomed")
    assert ui.delete_model_folder(models, "doomed") == doomed
    assert not doomed.exists() and keep.exists()
    assert [p.name for p in models.iterdir()] == ["keep-me"]  # no leftover rename
    with pytest.raises(ModelNotFoundError):
        ui.delete_model_folder(models, "doomed")
    (models / "not-a-model").mkdir()
    with pytest.raises(ModelNotFoundError):
        ui.delete_model_folder(models, "not-a-model")
    assert (models / "not-a-model").exists()


@pytest.mark.parametrize("name", ["../models", "..", "a/b", "/etc", "", "UPPER"])
def test_delete_model_folder_refuses_paths(tmp_path, name):
    _fake_model(tmp_path / "models", "keep-me")
    with pytest.raises(InputError):
        ui.delete_model_folder(tmp_path / "models", name)
    assert (tmp_path / "models" / "keep-me").exists()


def test_deleting_a_linked_model_removes_the_link_not_the_target(tmp_path):
    target = _fake_model(tmp_path / "elsewhere", "real")
    models = tmp_path / "models"
    models.mkdir()
    (models / "linked").symlink_to(target, target_is_directory=True)
    ui.delete_model_folder(models, "linked")
    assert not (models / "linked").exists() and (target / "model.onnx").exists()


def test_model_rows_show_parity_of_converted_models(default_model):
    from engine.registry import Registry
    from engine.settings import REPO_ROOT

    registry = Registry(REPO_ROOT / "models.yaml", default_model.parent)
    rows = {r["model"]: r for r in ui.model_rows(registry.list())}
    converted = rows[default_model.name]
    assert converted["converted"] and converted["dim"] == 384 and converted["pooling"] == "mean"
    parity = re.fullmatch(r"min cos ([\d.]+), max \|Δ\| ([\d.e+-]+)", converted["fp32 parity"])
    assert parity and float(parity.group(1)) > 0.9999 and float(parity.group(2)) < 1e-4
    assert rows["all-mpnet-base-v2"]["converted"] is False and rows["all-mpnet-base-v2"]["fp32 parity"] == "—"
    variants = ui.variant_rows(registry.get(default_model.name).manifest)
    every_variant = {"fp32", "optimized", "fp16", "int8", "int8-static"}
    assert {v["variant"] for v in variants if v["runs on"] == "onnxruntime cpu"} == every_variant
    assert all(v["min cosine"] > 0.8 for v in variants)
    on_openvino = {v["variant"].split(" @ ")[0]: v for v in variants if v["runs on"].startswith("openvino")}
    assert set(on_openvino) == every_variant and on_openvino["fp32"]["min cosine"] >= 0.9999


# --- benchmarks -------------------------------------------------------------------------------------------
def _result(backend, variant, batch, speed, cosine=None, speedup=None, error=None):
    return BenchResult(backend, "m", variant, "cpu", batch, 64, 1.0, speed, speed * 10, 5.0, 6.0, 7.0, 0.2,
                       max_abs_diff=None if cosine is None else 1e-3, min_cosine=cosine, speedup_vs_baseline=speedup,
                       error=error)


REPORT = BenchReport("2026-01-01T00:00:00Z", {"cpu": "test"}, {"name": "sentences", "texts": 64}, "torch",
                     [_result("torch", "float32", 8, 70.0), _result("onnxruntime", "int8", 8, 105.0, 0.97, 1.5),
                      _result("onnxruntime", "fp16", 8, 0.0, error="no such variant")])


def test_bench_rows_label_and_parity():
    rows = ui.bench_rows(REPORT)
    assert [r["label"] for r in rows] == ["torch float32 · cpu · batch 8", "onnxruntime int8 · cpu · batch 8",
                                          "onnxruntime fp16 · cpu · batch 8"]
    assert [r["parity"] for r in rows] == ["reference", "cos ≥ 0.97000, |Δ| ≤ 1.0e-03", "error"]
    assert rows[1]["speed-up"] == 1.5 and rows[0]["speed-up"] is None and rows[2]["error"] == "no such variant"


def test_workload_text_says_only_what_the_report_recorded():
    side_by_side = {"name": "scifact-queries,scifact-abstracts", "texts": 556, "batch_size": 32, "rounds": 3}
    assert ui.workload_text(side_by_side) == "workload scifact-queries,scifact-abstracts: 556 texts, batch 32, best of 3 rounds"
    assert ui.workload_text({"name": "sentences", "texts": 64, "mean_chars": 41.6}) == (
        "workload sentences: 64 texts, 42 characters on average")
    assert ui.workload_text({}) == "workload ?: ? texts"


def test_report_exports_round_trip():
    lines = ui.report_csv(REPORT).splitlines()
    assert lines[0].split(",") == CSV_FIELDS and len(lines) == 4
    data = json.loads(ui.report_json(REPORT))
    assert data["results"][1]["min_cosine"] == 0.97 and data["reference"] == "torch"


def test_parse_batch_sizes():
    assert ui.parse_batch_sizes("1, 8,32;8") == [1, 8, 32]
    for bad in ("", "0", "x", "1,-2", "99999"):
        with pytest.raises(InputError):
            ui.parse_batch_sizes(bad)


# --- formatting and choices ---------------------------------------------------------------------------------
def test_formatting():
    assert ui.format_bytes(512) == "512 B" and ui.format_bytes(2048) == "2.0 KB" and ui.format_bytes(3 * 1024**3) == "3.0 GB"
    assert ui.format_ms(0.0123) == "12.3 ms" and ui.format_ms(2.5) == "2.50 s"
    assert ui.latency_text({"embed": 0.02, "search": 0.001, "total": 0.021}) == "21.0 ms (embed 20.0 ms, search 1.0 ms)"
    assert ui.plural(1, "document") == "1 document" and ui.plural(3, "document") == "3 documents"


def test_provider_and_ocr_choices():
    from engine.ocr.base import Availability
    from engine.providers import status

    choices = ui.provider_choices(status())
    assert choices[0] == "auto" and "cpu" in choices
    assert set(choices[1:]) == {s.name for s in status() if s.available}
    assert ui.ocr_label(Availability("mistral", False, "no key")) == "mistral (unavailable)"
    assert ui.ocr_label(Availability("text", True)) == "text"


# --- page images ------------------------------------------------------------------------------------------
def test_page_images_of_a_real_pdf():
    from conftest import shared_data

    pdf = shared_data("pdfs", "encrypted_user_pw_rc4.pdf")
    png = ui.page_png(pdf, 1, dpi=50, password="openpassword")
    assert png.startswith(b"\x89PNG")
    thumbs = ui.thumbnail_pngs(pdf, (1, 2, 3), width_px=80, password="openpassword")
    assert [n for n, _ in thumbs] == [1]  # a one-page file: pages past the end are skipped
    from engine.errors import EncryptedDocumentError

    with pytest.raises(EncryptedDocumentError):
        ui.page_png(pdf, 1)


def test_upload_limit_of_the_app_matches_the_engine():
    import tomllib

    from engine.settings import REPO_ROOT, Settings

    config = tomllib.loads((REPO_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == Settings.model_fields["max_upload_mb"].default
    assert config["client"]["showErrorDetails"] == "none"
    assert config["browser"]["gatherUsageStats"] is False


def test_a_manifest_without_openvino_parity_is_pointed_out(default_model):
    from dataclasses import replace

    from engine.manifest import read_manifest

    manifest = read_manifest(default_model)
    assert not ui.openvino_parity_missing(manifest)  # converted here, with openvino installed
    stripped = replace(manifest, variants={k: replace(v, provider_parity={}) for k, v in manifest.variants.items()})
    assert ui.openvino_parity_missing(stripped)


def test_a_histogram_of_equal_values_is_one_bar_a_token_wide():
    """Four chunks of 7 tokens made twenty bins 0.05 wide: a hairline bar."""
    assert ui.histogram([7, 7, 7, 7]) == [{"start": 6.5, "end": 7.5, "count": 4}]


def test_live_hits_drop_those_of_deleted_documents():
    @dataclass
    class Hit:
        doc_id: str

    hits = [Hit("a"), Hit("b"), Hit("a"), Hit("c")]
    assert ui.live_hits(hits, ["a", "c"]) == ([hits[0], hits[2], hits[3]], 1)
    assert ui.live_hits(hits, []) == ([], 4)


def test_page_images_name_the_document_not_its_stored_copy(tmp_path):
    """The stored copy is named by its digest: an encrypted one said 'eda8c19f….pdf is encrypted'."""
    import shutil

    from conftest import shared_data

    from engine.errors import EncryptedDocumentError

    stored = tmp_path / ("e" * 64 + ".pdf")
    shutil.copy(shared_data("pdfs", "encrypted_user_pw_aes256.pdf"), stored)
    for render in (lambda: ui.page_png(stored, 1, name="payroll.pdf"),
                   lambda: ui.thumbnail_pngs(stored, [1], name="payroll.pdf")):
        with pytest.raises(EncryptedDocumentError, match=r"^payroll\.pdf is encrypted"):
            render()
    assert ui.thumbnail_pngs(stored, [1], password="usersecret", name="payroll.pdf")[0][0] == 1
