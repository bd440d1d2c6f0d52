"""Files a results folder writes: atomic replacement, the creation mode, the OS lock."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ._faults import fault_point


def file_mode() -> int:
    """0o666 less the umask: what ``open()`` would have given (``mkstemp`` makes files 0o600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: Path, data: bytes, fault: str = "") -> None:
    """Writes to a temporary file in the same folder, then renames: a reader never sees half a file.
    A process killed in between leaves ``.<name>.XXXX``, which :class:`RunFolder` removes."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.chmod(temporary, file_mode())
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        if fault:
            fault_point(fault)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def lock_file(descriptor: int) -> bool:
    """Takes an exclusive, non-blocking OS lock on an open file; False when another holder has it.
    The OS drops it when the process ends, however it ends."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
