"""Collections under concurrent use: readers holding an older manifest while writers delete and
re-ingest, one variant per collection (checked under the writer's lock), drop racing ingest."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from test_collection import DIM, _doc

from engine import collection as index
from engine.collection import Collection
from engine.errors import CollectionNotFoundError, ModelMismatchError, VariantMismatchError

ROOT = __import__("conftest").ROOT


@pytest.fixture()
def two(tmp_path):
    """A writer and a separate reader object on the same collection (as two processes would have)."""
    writer = Collection(tmp_path, "shared")
    writer.create("model-a", "fp32", DIM, {})
    docs = {name: _doc(name[0] * 64, name, 4, seed) for seed, name in enumerate(["a.pdf", "b.pdf"])}
    for record, vectors, chunks, pages in docs.values():
        writer.add_document(record, vectors, chunks, "model-a", pages=pages)
    return writer, Collection(tmp_path, "shared"), docs


def _churn(writer, docs) -> None:
    """Delete a.pdf, then re-ingest b.pdf twice: the old code removed a.pdf's segment right away."""
    writer.delete_document("a.pdf")
    record, vectors, chunks, pages = docs["b.pdf"]
    for _ in range(2):
        writer.add_document(record, vectors, chunks, "model-a", pages=pages)


def test_a_reader_holding_an_older_manifest_still_finds_its_segments(two, monkeypatch):
    writer, reader, docs = two
    stale = reader.info()  # read just before the writer commits three times
    _churn(writer, docs)
    monkeypatch.setattr(reader, "info", lambda: stale)  # the reader still acts on what it read
    hits = reader.search(docs["a.pdf"][1][0], k=3)
    assert hits[0].document == "a.pdf" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert reader.pages_of("a.pdf")[0].text.startswith("sentence0.")


def test_a_reader_whose_segment_vanished_retries_with_the_newer_manifest(two, monkeypatch):
    writer, reader, docs = two
    monkeypatch.setattr(index, "RETAIN_SECONDS", -1.0)  # retired segments go at the next commit
    stale = reader.info()
    _churn(writer, docs)
    assert not list((reader.path / "segments").glob(f"{stale.document('a.pdf').segment}.*"))
    calls = []
    real_info = Collection.info

    def info_first_stale():
        calls.append(1)
        return stale if len(calls) == 1 else real_info(reader)

    monkeypatch.setattr(reader, "info", info_first_stale)
    hits = reader.search(docs["b.pdf"][1][1], k=10)
    assert {h.document for h in hits} == {"b.pdf"} and hits[0].chunk_index == 1
    assert len(calls) == 2  # one re-read of the manifest after the segment was found gone


def test_a_segment_missing_for_good_is_a_clear_error(two):
    from engine.errors import CollectionError

    writer, reader, docs = two
    segment = writer.info().document("a.pdf").segment
    (writer.path / "segments" / f"{segment}.npy").unlink()
    with pytest.raises(CollectionError, match="missing") as caught:
        reader.search(docs["b.pdf"][1][0], k=1)
    assert "check-collection shared" in caught.value.hint


def test_one_variant_per_collection_is_checked_under_the_lock(tmp_path):
    col = Collection(tmp_path, "variants")
    col.create("model-a", "fp32", DIM, {})
    assert col.create("model-a", "int8", DIM, {}).variant == "fp32"  # the second creator finds the first one's
    record, vectors, chunks, pages = _doc("e" * 64, "e.pdf", 2, 3)
    before = (col.path / "collection.json").read_bytes()
    with pytest.raises(VariantMismatchError, match="fp32 vectors") as caught:
        col.add_document(record, vectors, chunks, "model-a", pages=pages, variant="int8")
    assert isinstance(caught.value, ModelMismatchError) and caught.value.code == "variant_mismatch"
    assert (col.path / "collection.json").read_bytes() == before and not (col.path / "segments").exists()
    col.add_document(record, vectors, chunks, "model-a", pages=pages, variant="fp32")
    assert col.info().documents[0].name == "e.pdf"


DROP_RACE = """
import json, sys, time, traceback
sys.path[:0] = [{root!r}, {root!r} + "/tests", {tests!r}]
from engine.errors import CollectionNotFoundError, StudioError
from engine.collection import Collection
from test_collection import _doc, DIM
role, seconds = sys.argv[1], float(sys.argv[2])
col = Collection({path!r}, "race")
counts = {{"ok": 0, "not_found": 0, "other_studio_error": []}}
record, vectors, chunks, pages = _doc("{seed}" * 64, "doc.pdf", 3, 1)
deadline = time.monotonic() + seconds
try:
    while time.monotonic() < deadline:
        try:
            if role == "drop":
                col.drop()
            elif role == "ingest":
                col.create("model-a", "fp32", DIM, {{}})
                col.add_document(record, vectors, chunks, "model-a", pages=pages, original=b"%PDF-1.4 x")
            else:
                col.search(vectors[0], k=2)
            counts["ok"] += 1
        except CollectionNotFoundError:
            counts["not_found"] += 1
        except StudioError as exc:
            counts["other_studio_error"].append(exc.message)
except Exception:
    traceback.print_exc()
    sys.exit(1)
print(json.dumps(counts))
"""


def test_drop_racing_ingest_and_search_ends_cleanly(tmp_path):
    seconds = 6
    procs = {}
    for role, seed in (("drop", "a"), ("ingest", "b"), ("ingest", "c"), ("search", "d")):
        code = DROP_RACE.format(root=str(ROOT), tests=str(ROOT / "tests" / "engine"), path=str(tmp_path), seed=seed)
        procs[f"{role}-{seed}"] = subprocess.Popen([sys.executable, "-c", code, role, str(seconds)],
                                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{name}: {err[-2000:]}"
        results[name] = json.loads(out)
    assert all(not r["other_studio_error"] for r in results.values()), results
    assert results["drop-a"]["ok"] > 0 and results["ingest-b"]["ok"] + results["ingest-c"]["ok"] > 0, results
    col = Collection(tmp_path, "race")
    if col.exists:
        assert col.check().ok
    assert not list(tmp_path.glob(".race.dropped-*")) or col.exists  # a later writer removes leftovers
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]


def test_a_drop_waits_for_the_writer_and_an_ingest_after_it_starts_afresh(tmp_path):
    col = Collection(tmp_path, "again")
    col.create("model-a", "fp32", DIM, {})
    record, vectors, chunks, pages = _doc("f" * 64, "f.pdf", 2, 5)
    col.add_document(record, vectors, chunks, "model-a", pages=pages)
    col.drop()
    assert not col.path.exists() and not list(tmp_path.glob(".again.dropped-*"))
    with pytest.raises(CollectionNotFoundError):
        col.add_document(record, vectors, chunks, "model-a", pages=pages)
    assert not col.path.exists()
    with pytest.raises(CollectionNotFoundError):
        col.drop()
    np.testing.assert_equal(col.create("model-a", "fp32", DIM, {}).documents, ())


def test_files_a_killed_writer_left_are_removed_once_their_time_is_up(tmp_path, monkeypatch):
    col = Collection(tmp_path, "orphans")
    col.create("model-a", "fp32", DIM, {})
    (col.path / "segments").mkdir()
    (col.path / "files").mkdir()
    orphans = [col.path / "segments" / "0123456789abcdef-g7.npy", col.path / "files" / ("f" * 64 + ".pdf")]
    for path in orphans:
        path.write_bytes(b"left by a writer killed before its commit")
    record, vectors, chunks, pages = _doc("a" * 64, "a.pdf", 2, 1)
    col.add_document(record, vectors, chunks, "model-a", pages=pages, original=b"%PDF-a")
    assert all(p.exists() for p in orphans)  # young: every file no manifest names gets RETAIN_SECONDS
    monkeypatch.setattr(index, "RETAIN_SECONDS", -1.0)
    col.delete_document("a.pdf")
    assert not any(p.exists() for p in orphans)


@pytest.mark.parametrize("kind", ["native", "lock-file fallback"])
def test_the_lock_excludes_other_holders(tmp_path, monkeypatch, kind):
    """engine/locking.py: fcntl here; the O_EXCL lock file where neither fcntl nor msvcrt exists."""
    import threading
    import time

    from engine import locking

    if kind != "native":
        monkeypatch.setattr(locking, "fcntl", None)
        monkeypatch.setattr(locking, "msvcrt", None)
    inside, overlaps = [], []

    def hold():
        for _ in range(5):
            with locking.exclusive(tmp_path / ".x.lock"):
                inside.append(1)
                if len(inside) > 1:
                    overlaps.append(len(inside))
                time.sleep(0.005)
                inside.pop()

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not overlaps and not inside
    assert not (tmp_path / ".x.lock.held").exists()
