"""Writing cache files safely: the umask's file mode, locked temporary files, stale-temp cleanup.

Every cache writer of the data and vision layers writes a temporary ``.<name>.<random>.part`` file
beside its target and renames it into place. ``mkstemp`` creates that file 0600, which would make a
shared cache unreadable to the group; ``temporary_file`` gives it the mode ``open()`` would have.
The writer holds an advisory lock on the temporary file for as long as it writes, so a later
``remove_stale_temporaries`` can tell a killed write (unlocked) from one in progress (locked).
"""

from __future__ import annotations

import fnmatch
import os
import tempfile
import time

try:
    import fcntl
except ImportError:  # Windows: an open file cannot be deleted there, which protects live writes
    fcntl = None  # type: ignore[assignment]

# A temporary file younger than this is never removed: it may belong to a writer that has made
# it but not yet locked it (or to a writer on a file system where locks do not reach us).
STALE_AFTER_SECONDS = 60.0
# Without advisory locks, only age tells a dead write from a slow one.
_STALE_AFTER_SECONDS_UNLOCKED = 3600.0


def file_mode() -> int:
    """The mode ``open()`` gives a new file: ``0o666`` less the process umask (an int).

    Read from ``/proc/self/status`` where it is available, because reading the umask through
    ``os.umask`` briefly changes it for every thread of the process.

    Example:
        >>> 0 <= file_mode() <= 0o666
        True
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def temporary_file(folder: str, name: str) -> tuple[int, str]:
    """A new locked temporary file ``<folder>/.<name>.<random>.part`` with the umask's mode.

    Args:
        folder: an existing folder (the target's, so the final ``os.replace`` is atomic).
        name: the target's file name.

    Returns:
        ``(fd, path)``: an open binary descriptor (holding an exclusive advisory lock, released
        when it is closed) and the temporary path. The caller writes, closes and renames it, and
        unlinks it on failure.

    Example:
        >>> import os, tempfile
        >>> folder = tempfile.mkdtemp()
        >>> fd, path = temporary_file(folder, "a.npy")
        >>> os.close(fd); os.path.basename(path).startswith(".a.npy."), path.endswith(".part")
        (True, True)
    """
    handle, path = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                pass  # a file system without locks (ENOLCK): the age rule alone protects the write
        os.chmod(path, file_mode())
    except BaseException:
        os.close(handle)
        os.unlink(path)
        raise
    return handle, path


def _is_locked(path: str) -> bool:
    """Whether another open descriptor holds the advisory lock of ``path``."""
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:
        return True  # gone or unreadable: leave it alone
    try:
        # shared, so that a read-only descriptor may ask (NFS maps flock to fcntl locks, whose
        # exclusive kind needs write access); it still conflicts with the writer's exclusive lock
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(handle)  # closing releases the lock we may have taken
    return False


def remove_stale_temporaries(folder: str, pattern: str = ".*.part") -> list[str]:
    """Delete the temporary files that killed writers left in ``folder``.

    A file matching ``pattern`` (an ``fnmatch`` pattern over names) is removed when no process
    holds its lock and it is older than ``STALE_AFTER_SECONDS``; where advisory locks do not
    exist, when it is older than an hour. Errors (a missing folder, a file that vanished) are
    ignored: cleaning is best effort.

    Returns:
        The paths removed.

    Example:
        >>> import os, tempfile
        >>> folder = tempfile.mkdtemp(); path = os.path.join(folder, ".a.npy.x1.part")
        >>> open(path, "wb").close(); os.utime(path, (0, 0))
        >>> [os.path.basename(p) for p in remove_stale_temporaries(folder)]
        ['.a.npy.x1.part']
    """
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    now = time.time()
    limit = STALE_AFTER_SECONDS if fcntl is not None else _STALE_AFTER_SECONDS_UNLOCKED
    for name in names:
        if not fnmatch.fnmatchcase(name, pattern):
            continue
        path = os.path.join(folder, name)
        try:
            if not os.path.isfile(path) or now - os.stat(path).st_mtime < limit:
                continue
            if fcntl is not None and _is_locked(path):
                continue
            os.unlink(path)
        except OSError:
            continue
        removed.append(path)
    return removed
