"""Storage faults: a full disk, a read-only data folder, permission denied, a path too long. Each is a
StorageError with a message and a hint; nothing partial (no segment, no ``.tmp-`` file) stays behind;
the next file of a multi-file ingest is still tried. Real file systems where the machine allows
(a 1 MiB tmpfs and a read-only remount need root; without root, permissions come from chmod)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_data
from test_collection import DIM, _doc

from engine import storage
from engine.collection import Collection
from engine.errors import StorageError, StorageFullError

ROOT = __import__("conftest").ROOT
ROOTED = hasattr(os, "geteuid") and os.geteuid() == 0


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _big_doc(n=400):
    """A document whose segment is about 1 MB (400 vectors of 384 dims plus text)."""
    record, _, chunks, pages = _doc("9" * 64, "big.pdf", n, 7)
    return record, np.random.default_rng(1).normal(size=(n, 384)).astype(np.float32), chunks, pages


@contextlib.contextmanager
def tmpfs(size: str = "1m"):
    """A real, tiny file system (root only), unmounted afterwards."""
    if not ROOTED:
        pytest.skip("mounting a tmpfs needs root")
    folder = Path(tempfile.mkdtemp(prefix="studio-tmpfs-"))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        folder.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
        folder.rmdir()


def test_a_full_disk_is_a_storage_error_and_leaves_nothing_behind_unit(tmp_path, monkeypatch):
    """ENOSPC from the write itself (os.write, as a full disk raises it) half-way through a segment."""
    col = Collection(tmp_path, "full")
    col.create("model-a", "fp32", 384, {})
    small = _doc("1" * 64, "small.pdf", 2, 1)
    col.add_document(small[0], np.ones((2, 384), np.float32), small[2], "model-a", pages=small[3])
    before = _files(tmp_path)
    real_write, written = os.write, []

    def write_until_full(fd, data):
        written.append(len(data))
        if len(written) >= 2:  # the vectors went through; the chunk file finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(storage.os, "write", write_until_full)
    record, vectors, chunks, pages = _big_doc()
    with pytest.raises(StorageFullError) as caught:
        col.add_document(record, vectors, chunks, "model-a", pages=pages, original=b"%PDF-1.4 big")
    monkeypatch.undo()
    assert "full" in caught.value.message and "STUDIO_DATA_DIR" in caught.value.hint
    assert caught.value.code == "storage_full" and len(written) >= 2
    assert _files(tmp_path) == before  # no segment, no .tmp file, the manifest as it was
    assert [d.name for d in col.info().documents] == ["small.pdf"]


def test_a_real_full_disk(tmp_path):
    with tmpfs("1m") as disk:
        col = Collection(disk, "full")
        col.create("model-a", "fp32", 384, {})
        before = _files(disk)
        record, vectors, chunks, pages = _big_doc(1200)
        with pytest.raises(StorageFullError, match="full"):
            col.add_document(record, vectors, chunks, "model-a", pages=pages, original=os.urandom(200_000))
        assert _files(disk) == before
        small = _doc("2" * 64, "small.pdf", 3, 2)
        col.add_document(small[0], np.ones((3, 384), np.float32), small[2], "model-a", pages=small[3])
        assert [d.name for d in Collection(disk, "full").info().documents] == ["small.pdf"]


def test_a_read_only_data_folder(tmp_path):
    record, vectors, chunks, pages = _doc("3" * 64, "c.pdf", 3, 3)
    if ROOTED:
        with tmpfs("4m") as disk:
            col = Collection(disk, "ro")
            col.create("model-a", "fp32", DIM, {})
            before = _files(disk)
            subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
            with pytest.raises(StorageError) as caught:
                col.add_document(record, vectors, chunks, "model-a", pages=pages)
            assert caught.value.code == "storage_read_only" and "read-only" in caught.value.message
            assert col.info().documents == () and _files(disk) == before  # still readable
            with pytest.raises(StorageError, match="read-only"):
                Collection(disk, "new").create("model-a", "fp32", DIM, {})
        return
    col = Collection(tmp_path, "ro")
    col.create("model-a", "fp32", DIM, {})
    for folder in (tmp_path, col.path):
        folder.chmod(0o555)
    try:
        with pytest.raises(StorageError) as caught:
            col.add_document(record, vectors, chunks, "model-a", pages=pages)
        assert caught.value.code in ("storage_permission", "storage_read_only") and caught.value.hint
    finally:
        for folder in (tmp_path, col.path):
            folder.chmod(0o755)


PERMISSION = """
import json, sys
sys.path[:0] = [{root!r}, {root!r} + "/tests", {tests!r}]
from engine.errors import StorageError
from engine.collection import Collection
from test_collection import _doc
col = Collection({path!r}, "locked")
record, vectors, chunks, pages = _doc("4" * 64, "d.pdf", 3, 4)
try:
    col.add_document(record, vectors, chunks, "model-a", pages=pages)
except StorageError as exc:
    print(json.dumps(exc.to_dict()))
"""


def test_permission_denied(tmp_path):
    """A collection folder owned by another user. Root ignores file modes, so as root the writer runs
    without the capabilities that let it (setpriv drops CAP_DAC_OVERRIDE and friends)."""
    col = Collection(tmp_path, "locked")
    col.create("model-a", "fp32", DIM, {})
    before = _files(tmp_path)
    if ROOTED:
        for path in [col.path, *col.path.rglob("*")]:
            os.chown(path, 65534, 65534)
        code = PERMISSION.format(root=str(ROOT), tests=str(ROOT / "tests" / "engine"), path=str(tmp_path))
        done = subprocess.run(["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--",
                               sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        if done.returncode != 0 and "setpriv" in done.stderr:
            pytest.skip(f"cannot drop capabilities here: {done.stderr.strip()}")
        assert done.returncode == 0, done.stderr[-2000:]
        error = json.loads(done.stdout)
    else:
        col.path.chmod(0o555)
        try:
            record, vectors, chunks, pages = _doc("4" * 64, "d.pdf", 3, 4)
            with pytest.raises(StorageError) as caught:
                col.add_document(record, vectors, chunks, "model-a", pages=pages)
            error = caught.value.to_dict()
        finally:
            col.path.chmod(0o755)
    assert error["error"] == "storage_permission" and "permission denied" in error["message"]
    assert "write access" in error["hint"]
    assert _files(tmp_path) == before


def test_a_path_too_long(tmp_path):
    """A data folder so deep that the segment files' paths pass PATH_MAX (4096 on Linux)."""
    parts, fd = [], os.open(tmp_path, os.O_RDONLY)
    try:
        while len(str(tmp_path)) + sum(len(p) + 1 for p in parts) < 4096 - 120:
            name = "d" * 200
            os.mkdir(name, dir_fd=fd)
            new_fd = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd, parts = new_fd, [*parts, name]
    finally:
        os.close(fd)
    root = tmp_path.joinpath(*parts)
    col = Collection(root, "deep-" + "x" * 50)
    with pytest.raises(StorageError) as caught:
        col.create("model-a", "fp32", DIM, {})
        record, vectors, chunks, pages = _doc("5" * 64, "e.pdf", 3, 5)
        col.add_document(record, vectors, chunks, "model-a", pages=pages)
    assert caught.value.code == "storage_path_too_long" and "shorter STUDIO_DATA_DIR" in caught.value.hint
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name or p.suffix in (".npy", ".jsonl")]


def test_stale_temporary_files_of_killed_writers_are_removed_under_the_lock(tmp_path):
    col = Collection(tmp_path, "stale")
    col.create("model-a", "fp32", DIM, {})
    stale = [col.path / ".collection.json.tmp-4242-1", col.path / "segments" / ".abc.jsonl.tmp-4242-1"]
    stale[1].parent.mkdir()
    for path in stale:
        path.write_bytes(b"")
    record, vectors, chunks, pages = _doc("6" * 64, "f.pdf", 2, 6)
    col.add_document(record, vectors, chunks, "model-a", pages=pages)
    assert not any(p.exists() for p in stale)
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]


def test_storage_errors_on_the_wire():
    from engine.server.errors import status_for

    assert status_for(StorageFullError("full")) == 507
    assert status_for(StorageError("read-only", code="storage_read_only")) == 500


def test_a_full_disk_fails_one_file_and_the_next_one_is_still_ingested(studio, monkeypatch):
    """ingest_many: the first file meets a full disk (os.write refuses big writes), the second is small."""
    from engine.pipeline import ingest_many

    real_write = os.write

    def full_for_big_writes(fd, data):
        if len(data) > 100_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(storage.os, "write", full_for_big_writes)
    files = [shared_data("pdfs", "paper_mdpi_ki67_images.pdf"), shared_data("pdfs", "table_small.pdf")]
    results = ingest_many(studio, "fills-up", files)
    monkeypatch.undo()
    assert [r.ok for r in results] == [False, True]
    assert results[0].error["error"] == "storage_full" and "full" in results[0].error["message"]
    target = studio.collection("fills-up")
    assert [d.name for d in target.info().documents] == ["table_small.pdf"]
    assert target.check().ok and target.check().leftovers == 0
    assert not [p for p in target.path.rglob("*") if ".tmp-" in p.name]


def test_cli_ingest_on_a_full_disk_reports_the_file_and_goes_on(studio, default_model):
    """The CLI on a real 1 MiB disk: the 2.3 MB article cannot be stored, the next small file can."""
    with tmpfs("1m") as disk:
        (disk / "models").symlink_to(default_model.parent)
        env = {**os.environ, "STUDIO_DATA_DIR": str(disk)}
        files = [str(shared_data("pdfs", "paper_mdpi_ki67_images.pdf")), str(shared_data("pdfs", "table_small.pdf"))]
        done = subprocess.run([sys.executable, "-m", "engine", "ingest", *files, "--collection", "small-disk",
                               "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 1, done.stderr[-2000:]
        assert "Traceback" not in done.stdout + done.stderr
        results = json.loads(done.stdout)
        assert [r["ok"] for r in results] == [False, True]
        assert results[0]["error"]["error"] == "storage_full"
        col = Collection(disk / "collections", "small-disk")
        assert [d.name for d in col.info().documents] == ["table_small.pdf"] and col.check().ok
        assert not [p for p in disk.rglob("*") if ".tmp-" in p.name]


def test_an_unreadable_source_file_is_reported_and_the_next_one_is_still_tried(studio):
    """An OSError from outside the collection still becomes a per-file error. /proc/self/mem is a real
    file whose read fails (EIO at offset 0) for root too, unlike a chmod 000 file."""
    from engine.pipeline import ingest_many

    unreadable = Path("/proc/self/mem")
    try:
        unreadable.read_bytes()
        pytest.skip("/proc/self/mem is readable here")
    except OSError:
        pass
    results = ingest_many(studio, "unreadable", [unreadable, shared_data("pdfs", "table_small.pdf")])
    assert [r.ok for r in results] == [False, True]
    assert "mem" in results[0].error["message"] and results[0].error["hint"], results[0].error


@pytest.mark.parametrize("where", ["fsync", "cleanup"])
@pytest.mark.parametrize("fault", [KeyboardInterrupt, OSError])
def test_a_fault_after_the_manifest_is_renamed_keeps_the_change_it_names(tmp_path, monkeypatch, where, fault):
    """Ctrl-C or an OSError after the new manifest's rename (the folder's fsync, the clean-up of old segments):
    the transaction rolled back the new segment files while the manifest named them, so every search of the
    collection failed ('a segment is missing'). The change now stands whole, and the collection stays usable."""
    col = Collection(tmp_path, "stands")
    col.create("model-a", "fp32", 384, {})
    small = _doc("1" * 64, "small.pdf", 2, 1)
    col.add_document(small[0], np.ones((2, 384), np.float32), small[2], "model-a", pages=small[3])
    if where == "fsync":
        real_fsync = os.fsync

        def fsync(fd):  # the folder's fsync once the renamed manifest names the new document
            if (os.readlink(f"/proc/self/fd/{fd}") == str(col.path)
                    and b"big.pdf" in (col.path / "collection.json").read_bytes()):
                raise fault("interrupted after the rename") if fault is KeyboardInterrupt else fault(errno.EIO, "I/O")
            return real_fsync(fd)

        if not os.path.isdir("/proc/self/fd"):
            pytest.skip("needs /proc to tell a folder's fsync")
        monkeypatch.setattr(storage.os, "fsync", fsync)
    else:
        def cleanup(self, before, after):
            raise fault("interrupted in the clean-up") if fault is KeyboardInterrupt else fault(errno.EIO, "I/O")

        monkeypatch.setattr(Collection, "_collect_garbage", cleanup)
    record, vectors, chunks, pages = _big_doc()
    try:
        col.add_document(record, vectors, chunks, "model-a", pages=pages)
    except KeyboardInterrupt:
        assert fault is KeyboardInterrupt  # an interrupt goes on up; the change is stored all the same
    monkeypatch.undo()
    info = col.info()
    assert [d.name for d in info.documents] == ["small.pdf", "big.pdf"]
    for document in info.documents:
        assert all(path.is_file() for path in col._segment_files(document.segment)), document.name
    assert len(col.chunks_of(info.documents[1].doc_id)[1]) == 400
    assert col.search(vectors[7], k=1)[0].chunk_index == 7
    assert col.check().ok
