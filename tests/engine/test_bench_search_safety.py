"""``python -m engine bench-search`` never touches the user's collections: its bench-<size> collections live
in its own folder, ``<data dir>/bench-search/collections``, so a user's collection named ``bench-50`` keeps its
documents; they are removed when the run ends, also when it fails; --keep/--reuse work on that folder; every
wrong argument ends the command with exit status 2 and one ``error:`` line before anything is built."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.chunking import Chunk
from engine.cli import main
from engine.collection import Collection, DocumentRecord, NewDocument

ROOT = __import__("conftest").ROOT
SMALL = ["--sizes", "50", "--queries", "5", "--exact-queries", "5"]


def run(data_dir: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "STUDIO_DATA_DIR": str(data_dir), **(env or {})}
    return subprocess.run([sys.executable, "-m", "engine", "bench-search", *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=300)


def make_user_collection(data_dir: Path, name: str = "bench-50") -> Collection:
    """The user's own collection, made as an ingest stores one: 3 chunks of one document."""
    collection = Collection(data_dir / "collections", name)
    collection.create("all-minilm-l6-v2", "fp32", 384, {})
    vectors = np.random.default_rng(7).normal(size=(3, 384)).astype(np.float32)
    chunks = [Chunk(i, 1, 0, 1, f"the user's own text {i}", (), 1) for i in range(3)]
    record = DocumentRecord(hashlib.sha256(b"mine").hexdigest(), "mine.pdf", 1, 3, "text", 0, 0, "", "")
    collection.add_documents([NewDocument(record, vectors, chunks)], "all-minilm-l6-v2")
    return collection


def assert_user_collection_intact(data_dir: Path, name: str = "bench-50") -> None:
    collection = Collection(data_dir / "collections", name)
    assert collection.exists, f"the user's collection {name} was dropped"
    info = collection.info()
    assert [d.name for d in info.documents] == ["mine.pdf"] and info.chunk_count == 3 and info.dim == 384
    query = np.random.default_rng(7).normal(size=(3, 384)).astype(np.float32)[1]
    hits = collection.search(query, k=1, exact=True)
    assert hits[0].text == "the user's own text 1"


def bench_folders(data_dir: Path) -> list[str]:
    """The collection folders in the benchmark's own place (lock files aside)."""
    root = data_dir / "bench-search" / "collections"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def test_user_collection_named_like_the_benchmark_keeps_its_documents(tmp_path):
    make_user_collection(tmp_path)
    result = run(tmp_path, *SMALL, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [r["mode"] for r in data["rows"]] == ["exact", "ann ef=64", "ann ef=128"]
    assert all(r["size"] == 50 and r["queries"] == 5 and r["recall_at_10"] == 1.0 for r in data["rows"])
    assert Path(data["collections_dir"]) == tmp_path / "bench-search" / "collections"
    assert_user_collection_intact(tmp_path)
    assert bench_folders(tmp_path) == []  # its own bench-50 removed again
    assert sorted(p.name for p in (tmp_path / "collections").iterdir() if p.is_dir()) == ["bench-50"]


def test_keep_and_reuse_work_on_the_benchmarks_own_collections(tmp_path):
    make_user_collection(tmp_path)
    kept = run(tmp_path, *SMALL, "--keep")
    assert kept.returncode == 0, kept.stderr
    assert f"kept bench-50 in {tmp_path / 'bench-search' / 'collections'}" in kept.stdout
    assert bench_folders(tmp_path) == ["bench-50"]
    own = Collection(tmp_path / "bench-search" / "collections", "bench-50")
    first = own.info()
    assert first.chunk_count == 50 and first.uid != Collection(tmp_path / "collections", "bench-50").info().uid

    reused = run(tmp_path, *SMALL, "--reuse", "--keep", "--json")
    assert reused.returncode == 0, reused.stderr
    again = own.info()
    assert (again.uid, again.generation) == (first.uid, first.generation)  # searched, not built again
    assert [r["recall_at_10"] for r in json.loads(reused.stdout)["rows"]] == [1.0, 1.0, 1.0]

    other_dtype = run(tmp_path, *SMALL, "--reuse", "--keep", "--dtype", "f32")  # not the same index: rebuilt
    assert other_dtype.returncode == 0, other_dtype.stderr
    assert own.info().uid != first.uid and own.info().search["ann"]["dtype"] == "f32"

    done = run(tmp_path, *SMALL, "--reuse")  # without --keep: searched, then removed
    assert done.returncode == 0, done.stderr
    assert bench_folders(tmp_path) == []
    assert_user_collection_intact(tmp_path)


def test_a_run_that_fails_after_building_leaves_no_collection_behind(tmp_path):
    """--rss starts the API after both sizes are built; an API that cannot start ends the run with one error."""
    make_user_collection(tmp_path)
    result = run(tmp_path, "--sizes", "50,200", "--queries", "5", "--exact-queries", "5", "--rss",
                 env={"STUDIO_API_MAX_ITEMS": "0"})  # the API refuses this setting at start
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "The API for --rss stopped at start" in errors[0] and "STUDIO_API_MAX_ITEMS" in errors[0]
    assert bench_folders(tmp_path) == []
    assert_user_collection_intact(tmp_path)


BAD = [
    (["--sizes", "-5"], "--sizes"),
    (["--sizes", "abc"], "--sizes"),
    (["--sizes", "0"], "--sizes"),
    (["--sizes", "50,0"], "--sizes"),
    (["--sizes", "5"], "--sizes"),  # recall is measured at 10
    (["--sizes", ","], "--sizes"),
    (["--queries", "0"], "--queries"),
    (["--exact-queries", "0"], "--exact-queries"),
    (["--queries", "-1"], "--queries"),
    (["--compare-faiss", "-1"], "--compare-faiss"),
    (["--compare-faiss", "0"], "--compare-faiss"),
    (["--dim", "0"], "--dim"),
    (["--dim", "x"], "--dim"),
    (["--ef", "0"], "--ef"),
    (["--ef", "64,abc"], "--ef"),
    (["--ef", "5000"], "--ef"),
    (["--rescore", "0"], "--rescore"),
]


@pytest.mark.parametrize(("argv", "flag"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_a_wrong_argument_is_one_error_line_before_anything_is_built(tmp_path, capsys, argv, flag):
    make_user_collection(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main(["bench-search", "--data-dir", str(tmp_path), *argv])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"python -m engine bench-search: error: argument {flag}: ")
    assert not (tmp_path / "bench-search").exists()
    assert_user_collection_intact(tmp_path)


def test_a_wrong_argument_from_the_shell_prints_no_traceback(tmp_path):
    result = run(tmp_path, "--sizes", "-5")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "python -m engine bench-search: error: argument --sizes: -5 is out of range: it must be at least 10 "
        "(see python -m engine bench-search --help)"]
    assert not (tmp_path / "bench-search").exists()
