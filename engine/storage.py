"""Files of a collection on disk: atomic writes, all-or-nothing transactions, and OSError -> StorageError.

A write goes to ``.<name>.tmp-<pid>-<thread>`` next to its target, is fsynced and renamed over the
target, so a reader sees the old file or the new one, never a torn one. A :class:`Transaction`
remembers every file it created; if anything fails before the caller commits, those files are
removed again, so a disk that fills up half-way leaves no partial segment behind. Every OSError
becomes a :class:`StorageError` with a message and a hint the user can act on.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from engine.errors import StorageError, StorageFullError

log = logging.getLogger(__name__)
TMP_MARK = ".tmp-"


def write_atomic(path: Path, data: bytes, replaced: Callable[[], None] | None = None) -> None:
    """Write ``data`` to ``path`` atomically and durably; on failure no temporary file is left. ``replaced`` is
    called as soon as the rename has put the new file in place (before the folder's fsync)."""
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if replaced is not None:
        replaced()
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def remove_stale_temporaries(*folders: Path) -> int:
    """Remove ``.*.tmp-*`` files: only writers holding the collection's lock make them, so any
    found by the lock's holder belong to a writer that was killed."""
    removed = 0
    for folder in folders:
        for file in folder.glob(f".*{TMP_MARK}*") if folder.is_dir() else ():
            with contextlib.suppress(OSError):
                file.unlink()
                removed += 1
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted write", removed)
    return removed


class Transaction:
    """Files written for one change of a collection; removed again unless :meth:`keep` is called."""

    def __init__(self) -> None:
        self.created: list[Path] = []
        self.kept = False

    def write(self, path: Path, data: bytes, replaced: Callable[[], None] | None = None) -> None:
        if not path.exists():
            self.created.append(path)  # before the write: an interrupt after its rename still rolls it back
        write_atomic(path, data, replaced)

    def keep(self) -> None:
        self.kept = True

    def commit(self, manifest: Path, data: bytes) -> None:
        """Write the manifest that names this change's files; once its rename is done the change stands and the
        files stay, whatever fails after (the folder's fsync, an interrupt, the clean-up of old files): rolled
        back then, the new manifest named deleted segments and the whole collection could not be searched."""
        self.write(manifest, data, replaced=self.keep)

    def roll_back(self) -> None:
        if self.kept:  # the manifest names these files now
            return
        for path in reversed(self.created):
            with contextlib.suppress(OSError):
                path.unlink()
        self.created.clear()


@contextlib.contextmanager
def transaction(what: str, where: Path) -> Iterator[Transaction]:
    """A :class:`Transaction` whose OSErrors come out as StorageError (``what`` failed in ``where``)."""
    files = Transaction()
    try:
        yield files
    except OSError as exc:
        files.roll_back()
        raise storage_error(exc, what, where) from None
    except BaseException:
        files.roll_back()
        raise
    else:
        if not files.kept:
            files.roll_back()


@contextlib.contextmanager
def converted(what: str, where: Path) -> Iterator[None]:
    """OSError inside the block -> StorageError."""
    try:
        yield
    except OSError as exc:
        raise storage_error(exc, what, where) from None


def storage_error(exc: OSError, what: str, where: Path) -> StorageError:
    """A user-facing StorageError for an OSError raised while doing ``what`` under ``where``."""
    number = exc.errno
    log.warning("%s failed in %s: %s", what, where, exc)
    if number in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return StorageFullError(f"{what} failed: the disk holding {where} is full. Nothing was changed.",
                                "free some space (or raise the quota), or point STUDIO_DATA_DIR at a larger disk")
    if number == errno.EROFS:
        return StorageError(f"{what} failed: {where} is on a read-only file system.",
                            "mount it read-write, or point STUDIO_DATA_DIR at a writable folder",
                            code="storage_read_only")
    if number in (errno.EACCES, errno.EPERM):
        user = f"uid {os.getuid()}" if hasattr(os, "getuid") else "this user"
        return StorageError(f"{what} failed: permission denied in {where}.",
                            f"give the user running the studio ({user}) read and write access to that folder, "
                            "or point STUDIO_DATA_DIR at one it owns", code="storage_permission")
    if number == errno.ENAMETOOLONG:
        return StorageError(f"{what} failed: a file path under {where} is longer than the file system allows.",
                            "use a shorter STUDIO_DATA_DIR", code="storage_path_too_long")
    reason = exc.strerror or type(exc).__name__
    return StorageError(f"{what} failed in {where}: {reason}.", "check the data folder's disk and permissions")
