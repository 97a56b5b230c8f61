"""Commands a user gets wrong are refused early, with a message and exit status 2, and leave every stored
collection exactly as it was: an unsupported keyword-search language (ingest, import, Collection.create), a
document name two documents share (delete), a folder where a file belongs (export, import) or a file where a
folder belongs (eval --vectors-cache), options that do not fit (--ocr, --chunk-overlap, chunk-eval --settings,
eval --dense-weight, qrels of other queries), and argparse's own errors with --json. A collection with a
missing segment says what to do (check-collection's delete command), and doing it makes it searchable again."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_collection import DIM, _doc

from engine.collection import Collection
from engine.errors import CollectionError, InputError
from engine.measure.evaluation import load_beir
from engine.transfer import export_collection

ROOT = __import__("conftest").ROOT


def run(data_dir: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "STUDIO_DATA_DIR": str(data_dir), **(env or {})}
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=120)


def snapshot(data_dir: Path) -> dict[str, bytes]:
    """Every file of the data folder's collections, with its bytes."""
    folder = data_dir / "collections"
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(result: subprocess.CompletedProcess, *words: str) -> dict:
    """Exit 2, no traceback, and (with --json) the engine's JSON error object naming ``words``."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    error = json.loads(result.stdout)
    assert set(error) == {"error", "message", "hint"}, error
    for word in words:
        assert word in error["message"] + " " + error["hint"], error
    return error


@pytest.fixture()
def data(tmp_path) -> Path:
    """A data folder with collection 'c': two different documents both named same.pdf, and other.pdf."""
    col = Collection(tmp_path / "collections", "c")
    col.create("model-a", "fp32", DIM, {"size": 128, "overlap": 16}, search={"mode": "keyword"})
    for doc_id, name, seed in (("1" * 64, "same.pdf", 1), ("2" * 64, "same.pdf", 2), ("3" * 64, "other.pdf", 3)):
        record, vectors, chunks, pages = _doc(doc_id, name, 4, seed)
        col.add_document(record, vectors, chunks, "model-a", pages=pages)
    return tmp_path


# --- A: the keyword-search language -------------------------------------------------------------------
def test_ingest_with_an_unsupported_language_creates_nothing(data, tmp_path):
    before = snapshot(data)
    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(b"%PDF-1.4 not read")
    result = run(data, "ingest", "--collection", "x", str(pdf), "--language", "xx", "--json")
    error = refused(result, "'xx' is not a supported keyword-search language", "--language")
    assert "en" in error["message"]
    assert not (data / "collections" / "x").exists() and snapshot(data) == before
    plain = run(data, "ingest", "--collection", "x", str(pdf), "--language", "xx")
    assert plain.returncode == 2 and "argument --language" in plain.stderr and not plain.stdout


def test_the_engine_refuses_to_create_a_collection_with_an_unsupported_language(tmp_path):
    col = Collection(tmp_path, "x")
    with pytest.raises(InputError, match="'xx' is not a supported keyword-search language"):
        col.create("model-a", "fp32", DIM, {}, search={"language": "xx"})
    assert not col.exists and not col.path.exists()


def test_import_refuses_an_export_with_an_unsupported_language(data, tmp_path):
    export = tmp_path / "c.parquet"
    export_collection(Collection(data / "collections", "c"), export)
    table = pq.read_table(export)
    meta = json.loads(table.schema.metadata[b"studio"])
    meta["search"]["language"] = "xx"
    pq.write_table(table.replace_schema_metadata({"studio": json.dumps(meta)}), tmp_path / "xx.parquet")
    before = snapshot(data)
    refused(run(data, "import", "--collection", "y", str(tmp_path / "xx.parquet"), "--json"), "'xx'", "not supported")
    assert snapshot(data) == before and not (data / "collections" / "y").exists()


def test_check_collection_reports_an_unsupported_language(tmp_path):
    col = Collection(tmp_path / "collections", "x")
    col.create("model-a", "fp32", DIM, {})
    manifest = col.path / "collection.json"
    raw = json.loads(manifest.read_text())
    raw["search"]["language"] = "xx"  # as an earlier version wrote it
    manifest.write_text(json.dumps(raw))
    result = run(tmp_path, "check-collection", "x", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert not report["ok"] and "'xx' is not supported" in report["problems"][0]
    assert "delete --collection x --all" in report["hint"]


# --- B: a name two documents share -------------------------------------------------------------------
def test_delete_refuses_an_ambiguous_name_and_deletes_by_doc_id(data):
    before = snapshot(data)
    error = refused(run(data, "delete", "--collection", "c", "same.pdf", "--json"), "1" * 64, "2" * 64, "doc_id")
    assert error["error"] == "invalid_input" and "delete --collection c" in error["hint"]
    assert snapshot(data) == before
    plain = run(data, "delete", "--collection", "c", "same.pdf")
    assert plain.returncode == 2 and "2 documents" in plain.stderr and snapshot(data) == before
    done = run(data, "delete", "--collection", "c", "2" * 10, "--json")  # a doc_id prefix of 8+ characters
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"deleted": "same.pdf", "doc_id": "2" * 64}
    left = Collection(data / "collections", "c").info().documents
    assert [d.doc_id for d in left] == ["1" * 64, "3" * 64]
    assert run(data, "delete", "--collection", "c", "same.pdf").returncode == 0  # unique now
    assert [d.name for d in Collection(data / "collections", "c").info().documents] == ["other.pdf"]


# --- C: a folder where a file belongs, a file where a folder belongs ----------------------------------------
def test_export_to_a_folder_is_refused_and_leaves_no_temporary(data, tmp_path):
    before = snapshot(data)
    out = tmp_path / "exports"
    out.mkdir()
    refused(run(data, "export", "--collection", "c", str(out), "--json"), "is a folder")
    assert list(out.iterdir()) == [] and not list(tmp_path.glob(".exports*")) and snapshot(data) == before
    parent_file = tmp_path / "a-file"
    parent_file.write_text("x")
    refused(run(data, "export", "--collection", "c", str(parent_file / "c.parquet"), "--json"), "is a file")


def test_a_failing_export_leaves_neither_file_nor_temporary(data, tmp_path, monkeypatch):
    col = Collection(data / "collections", "c")
    calls = []

    def failing(doc_id):
        calls.append(doc_id)
        if len(calls) == 2:
            raise CollectionError("unreadable")
        return Collection.chunks_of(col, doc_id)

    monkeypatch.setattr(col, "chunks_of", failing)
    with pytest.raises(CollectionError):
        export_collection(col, tmp_path / "out.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["collections"]


def test_eval_refuses_a_vectors_cache_that_is_a_file_before_loading_a_model(tmp_path):
    cache = tmp_path / "cache.npy"
    cache.write_bytes(b"x")
    dataset = _beir(tmp_path / "beir", queries=["q0"])
    result = run(tmp_path, "eval", "--dataset", str(dataset), "--vectors-cache", str(cache), "--json")
    refused(result, "--vectors-cache", "is a file")
    assert cache.read_bytes() == b"x" and "session ready" not in result.stderr


# --- D: a missing segment -------------------------------------------------------------------------------
def test_a_missing_segment_points_to_the_delete_that_repairs_it(data, tmp_path):
    col = Collection(data / "collections", "c")
    damaged = col.info().document("3" * 64)
    (col.path / "segments" / f"{damaged.segment}.npy").unlink()
    before = snapshot(data)
    search = refused(run(data, "search", "--collection", "c", "sentence1", "--mode", "keyword", "--json"),
                     "is missing", "check-collection c")
    assert "cannot be searched" in search["message"]
    check = run(data, "check-collection", "c", "--json")
    assert check.returncode == 1
    report = json.loads(check.stdout)
    assert report["problems"][0].startswith(f"other.pdf (doc_id {'3' * 64}): a file of its segment")
    assert f"python -m engine delete --collection c {'3' * 64}" in report["hint"]
    assert "stay searchable" not in report["hint"]
    record, vectors, chunks, pages = _doc("4" * 64, "new.pdf", 2, 4)
    with pytest.raises(CollectionError, match="is missing") as caught:  # an ingest's commit: not a storage error
        col.add_document(record, vectors, chunks, "model-a", pages=pages)
    assert caught.value.code == "collection_error" and "check-collection c" in caught.value.hint
    assert snapshot(data) == before
    assert run(data, "delete", "--collection", "c", "3" * 64).returncode == 0  # what the hint says
    healed = run(data, "search", "--collection", "c", "sentence1", "--mode", "keyword", "--json")
    assert healed.returncode == 0, healed.stderr
    assert {h["doc_id"] for h in json.loads(healed.stdout)} <= {"1" * 64, "2" * 64}
    assert run(data, "check-collection", "c").returncode == 0


# --- E: options checked before any file is read -------------------------------------------------------------
def test_an_unknown_ocr_engine_is_an_argument_error_even_for_a_stored_file(data, tmp_path):
    stored = tmp_path / "stored.pdf"
    stored.write_bytes(b"%PDF-1.4 stored")
    col = Collection(data / "collections", "c")
    record, vectors, chunks, pages = _doc(hashlib.sha256(stored.read_bytes()).hexdigest(), "stored.pdf", 2, 5)
    col.add_document(record, vectors, chunks, "model-a", pages=pages)
    before = snapshot(data)
    refused(run(data, "ingest", "--collection", "c", str(stored), "--ocr", "bogus", "--json"),
            "Unknown OCR engine 'bogus'", "tesseract")
    refused(run(data, "ingest", "--collection", "new", str(stored), "--ocr", "bogus", "--json"), "bogus")
    assert snapshot(data) == before


@pytest.mark.parametrize("argv", [
    ["--chunk-size", "64", "--chunk-overlap", "64"],
    ["--chunk-size", "64", "--chunk-overlap", "100"],
], ids=["equal", "larger"])
def test_chunk_overlap_must_be_smaller_than_the_size(data, tmp_path, argv):
    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(b"%PDF-1.4")
    before = snapshot(data)
    refused(run(data, "ingest", "--collection", "c", str(pdf), *argv, "--json"), "--chunk-overlap", "--chunk-size")
    assert snapshot(data) == before


@pytest.mark.parametrize("settings", ["8:100", "128:128", "4:0", "128", "128:16:x"])
def test_chunk_eval_settings_are_checked_by_argparse(tmp_path, settings):
    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(b"%PDF-1.4")
    refused(run(tmp_path, "chunk-eval", str(pdf), "--settings", settings, "--json"), "--settings")


def _beir(folder: Path, queries: list[str], qrels: tuple[str, ...] = ("q0", "q1")) -> Path:
    folder.mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "text": f"pump valve {i}"}) + "\n"
                                                 for i in range(4)))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": "pump"}) + "\n" for q in queries))
    (folder / "qrels-test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\td1\t1\n" for q in qrels))
    return folder


def test_eval_dense_weight_is_checked_before_the_model_loads(tmp_path):
    dataset = _beir(tmp_path / "beir", queries=["q0", "q1"])
    refused(run(tmp_path, "eval", "--dataset", str(dataset), "--mode", "hybrid", "--dense-weight", "2", "--json"),
            "--dense-weight", "between 0 and 1")
    dense = run(tmp_path, "eval", "--dataset", str(dataset), "--dense-weight", "0.3", "--json")
    refused(dense, "--dense-weight", "--mode dense")
    assert "session ready" not in dense.stderr


def test_eval_refuses_qrels_whose_queries_are_not_in_queries_jsonl(tmp_path):
    dataset = _beir(tmp_path / "beir", queries=["other1", "other2"])
    with pytest.raises(InputError, match="None of the 2 queries"):
        load_beir(dataset)
    refused(run(tmp_path, "eval", "--dataset", str(dataset), "--mode", "keyword", "--json"), "None of the 2 queries")
    partial = load_beir(_beir(tmp_path / "partial", queries=["q0"]))  # one judged query missing: left out, warned
    assert partial.query_ids == ["q0"]
    keyword = run(tmp_path, "eval", "--dataset", str(tmp_path / "partial"), "--mode", "keyword", "--json")
    assert keyword.returncode == 0, keyword.stderr
    assert json.loads(keyword.stdout)["queries"] == 1 and "1 of the 2 queries" in keyword.stderr


# --- F: argparse's errors in JSON -------------------------------------------------------------------------
@pytest.mark.parametrize(("argv", "words"), [
    (["search", "--collection", "c", "q", "--k", "0", "--json"], "argument --k"),
    (["search", "--json"], "required"),
    (["search", "--collection", "c", "q", "--json", "--bogus"], "unrecognized arguments: --bogus"),
    (["delete", "--collection", "c", "same.pdf", "--all", "--json"], "--all"),
])
def test_argument_errors_with_json_print_the_json_error(data, argv, words):
    before = snapshot(data)
    error = refused(run(data, *argv), words)
    assert error["error"] == "invalid_input" and "--help" in error["hint"]
    plain = run(data, *[a for a in argv if a != "--json"])
    assert plain.returncode == 2 and not plain.stdout and "error:" in plain.stderr
    assert snapshot(data) == before


# --- G: import of a folder -----------------------------------------------------------------------------------
def test_import_of_a_folder_says_it_is_a_folder(data, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "random.bin").write_bytes(os.urandom(64))
    before = snapshot(data)
    error = refused(run(data, "import", "--collection", "X", str(folder), "--json"), "is a folder", ".parquet")
    assert "random.bin" not in error["message"]
    assert snapshot(data) == before and not (data / "collections" / "X").exists()
