"""An exclusive inter-process lock on a file, for the writers of a collection.

POSIX uses ``fcntl.flock`` (released by the kernel when the holder dies, so a killed writer never
leaves a stale lock); Windows uses ``msvcrt.locking`` on the first byte (also released with the
process). Where neither exists, a lock file created with ``O_EXCL`` is the fallback: it is
removed on release and, since a dead holder cannot remove it, broken once it is older than
``STALE_SECONDS``. Readers never lock: they read the atomically replaced manifest.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
try:
    import msvcrt
except ImportError:  # POSIX
    msvcrt = None

STALE_SECONDS = 600.0
POLL_SECONDS = 0.05


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block; blocks until free."""
    if fcntl is None and msvcrt is None:
        with _lock_file(path):
            yield
        return
    with open(path, "a+b") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        else:
            _msvcrt_lock(handle)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)
            else:
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)


def _msvcrt_lock(handle) -> None:
    while True:
        handle.seek(0)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            return
        except OSError:
            time.sleep(POLL_SECONDS)


@contextlib.contextmanager
def _lock_file(path: Path) -> Iterator[None]:
    marker = path.with_name(path.name + ".held")
    while True:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            with contextlib.suppress(OSError):
                if time.time() - marker.stat().st_mtime > STALE_SECONDS:
                    marker.unlink()  # its holder died without releasing it
                    continue
            time.sleep(POLL_SECONDS)
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield
    finally:
        with contextlib.suppress(OSError):
            marker.unlink()
