"""Pieces every image dataset shares: the array-backed base class, the array cache, safe unpickling."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from ...data._datasets import ArrayDataset
from ...data._files import remove_stale_temporaries, temporary_file


class ImageArrayDataset(ArrayDataset):
    """An ``ArrayDataset`` of images with torchvision-style ``transform`` / ``target_transform``.

    Without transforms, ``get_batch`` gathers rows straight from ``inputs`` (the task pipeline's fast
    path); with a transform, ``supports_batches`` is False so loaders go through ``__getitem__``.

    Args:
        inputs: uint8 ``[N, H, W]`` or ``[N, H, W, C]`` images.
        targets: int64 ``[N]`` labels in ``[0, len(class_names))``.
        class_names: the name of each label (index = label).
        transform: optional ``image -> anything`` applied by ``__getitem__``.
        target_transform: optional ``label -> anything`` applied by ``__getitem__``.

    Example:
        >>> import numpy as np
        >>> data = ImageArrayDataset(np.zeros((2, 3, 3), np.uint8), np.array([0, 1]), ["a", "b"],
        ...                          transform=lambda image: image.shape)
        >>> data[1], data.supports_batches, data.data is data.inputs
        (((3, 3), np.int64(1)), False, True)
    """

    def __init__(
        self,
        inputs: Any,
        targets: Any,
        class_names: Sequence[str],
        transform: Callable | None = None,
        target_transform: Callable | None = None,
    ) -> None:
        super().__init__(inputs, np.asarray(targets, dtype=np.int64))
        self.class_names = list(class_names)
        self.transform = transform
        self.target_transform = target_transform

    @property
    def supports_batches(self) -> bool:  # type: ignore[override]
        # A batched gather would skip the per-sample transforms, so only offer it without them.
        return self.transform is None and self.target_transform is None

    @property
    def data(self) -> np.ndarray:
        """The images, ``inputs`` under torchvision's name."""
        return self.inputs

    @property
    def num_classes(self) -> int:
        """How many classes (``len(class_names)``)."""
        return len(self.class_names)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image, target = self.inputs[index], self.targets[index]
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)} images of shape {self.inputs.shape[1:]}, "
            f"{self.num_classes} classes)"
        )


def check_mode(mode: str, aliases: dict[str, str]) -> str:
    """The canonical split name for ``mode`` (``aliases`` maps every accepted spelling to it).

    Example:
        >>> check_mode("val", {"train": "train", "val": "validation", "validation": "validation"})
        'validation'
    """
    if mode not in aliases:
        raise ValueError(f"mode must be one of {sorted(aliases)}, got {mode!r}")
    return aliases[mode]


def default_cache_home() -> str:
    """``$L2L_MULTI_CACHE``, else ``$XDG_CACHE_HOME/l2l_multi``, else ``~/.cache/l2l_multi``."""
    if os.environ.get("L2L_MULTI_CACHE"):
        return os.path.expanduser(os.environ["L2L_MULTI_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "l2l_multi")


def cache_folders(root: str, cache_dir: str | os.PathLike | None, name: str) -> list[str]:
    """Where to look for (and write) a cached array: ``cache_dir`` alone when given, else ``root``
    then the user cache folder ``<cache home>/<name>`` (for a read-only ``root``)."""
    if cache_dir is not None:
        return [os.fspath(cache_dir)]
    return [root, os.path.join(default_cache_home(), name)]


# Stale temporaries of cache writes (``.<cache>.npy.<random>.part``, see ``data._files``).
_CACHE_TEMPORARIES = ".*.np[yz].*.part"
_DIGEST_SUFFIX = ".digest.json"


def _array_digest(array: np.ndarray) -> str:
    """sha256 over a C-contiguous array's bytes."""
    return hashlib.sha256(memoryview(np.ascontiguousarray(array)).cast("B")).hexdigest()


def _digest_record(array: np.ndarray) -> dict[str, Any]:
    return {"sha256": _array_digest(array), "shape": list(array.shape), "dtype": array.dtype.str}


def _read_verified(path: str) -> tuple[np.ndarray | None, str]:
    """``(array, "")`` when the digest file beside ``path`` vouches for the cache, else
    ``(None, why)``: a cache missing its digest, damaged or truncated is never used."""
    digest_path = path + _DIGEST_SUFFIX
    try:
        with open(digest_path, encoding="utf-8") as file:
            expected = json.load(file)
        if not isinstance(expected, dict) or set(expected) != {"sha256", "shape", "dtype"}:
            raise ValueError(f"expected the keys sha256, shape and dtype, got {expected!r}")
    except FileNotFoundError:
        return None, (
            f"cache file {path} has no digest file {digest_path} (written by an older "
            "version, or its write was cut short)"
        )
    except (OSError, ValueError) as error:  # JSONDecodeError is a ValueError
        return None, f"unreadable digest file {digest_path} ({error})"
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        return None, f"unreadable cache file {path} ({error})"
    if not isinstance(array, np.ndarray) or _digest_record(array) != expected:
        return None, f"cache file {path} does not match its digest file {digest_path} (damaged or replaced)"
    return array, ""


def load_cached(folders: Iterable[str], filename: str) -> np.ndarray | None:
    """The array stored as ``filename`` in the first folder holding a verified copy, or None.

    A cache is used only when the sha256 of its contents, its shape and dtype match the digest
    file ``<filename>.digest.json`` written beside it. When no folder holds a verified copy but
    some hold an unverifiable one, a warning names them and says the cache is rebuilt (the caller
    decodes again and ``save_cached`` overwrites the first writable one). Temporary files of
    killed cache writes found in these folders are deleted.
    """
    problems = []
    for folder in folders:
        remove_stale_temporaries(folder, _CACHE_TEMPORARIES)
        path = os.path.join(folder, filename)
        if os.path.isfile(path):
            array, problem = _read_verified(path)
            if array is not None:
                return array
            problems.append(problem)
    if problems:
        warnings.warn(f"{'; '.join(problems)}: rebuilding the cache", stacklevel=3)
    return None


def _write_file(folder: str, name: str, write: Callable[[Any], None]) -> str:
    """``write(binary file)`` into a locked temporary beside ``folder/name``, then rename it there."""
    handle, temporary = temporary_file(folder, name)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
        path = os.path.join(folder, name)
        os.replace(temporary, path)
        return path
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def save_cached(folders: Iterable[str], filename: str, array: np.ndarray) -> str | None:
    """Write ``array`` as ``filename`` in the first writable folder, with its digest file beside it.

    Each file goes to a temporary file and is renamed into place, so a reader never sees half a
    file; a write killed between the two renames leaves a cache whose digest does not match, which
    ``load_cached`` rebuilds. Files get the umask's mode (not ``mkstemp``'s 0600).

    Returns:
        The cache's path, or None (with a warning) when no folder is writable.
    """
    errors = []
    record = json.dumps(_digest_record(array)).encode("utf-8")
    for folder in folders:
        try:
            os.makedirs(folder, exist_ok=True)
            remove_stale_temporaries(folder, _CACHE_TEMPORARIES)
            path = _write_file(folder, filename, lambda file: np.save(file, array, allow_pickle=False))
            _write_file(folder, filename + _DIGEST_SUFFIX, lambda file: file.write(record))
            return path
        except OSError as error:
            errors.append(f"{folder}: {error}")
    warnings.warn(f"could not cache {filename} (decoding again next time): {'; '.join(errors)}", stacklevel=3)
    return None


def fingerprint(lines: Iterable[str]) -> str:
    """A short hex key (16 characters of sha256) over ``lines``, for naming cache files.

    Example:
        >>> fingerprint(["a", "b"])
        '911169ddaaf146af'
    """
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()[:16]


# Pickled datasets hold only numpy arrays and Python containers; allowing nothing else means a
# tampered pickle cannot run code while loading (pickle.load alone would call anything).
_NUMPY_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # how Python 3 writes bytes at pickle protocol 2 (harmless)
}
_BUILTIN_GLOBALS = {"set", "frozenset", "list", "dict", "tuple", "bytearray", "complex", "slice"}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        # Pickles written by numpy < 2 (and Python 2) name numpy.core, which numpy 2 renamed.
        if module.startswith("numpy.core"):
            module = "numpy._core" + module[len("numpy.core") :]
        if (module, name) in _NUMPY_GLOBALS or (
            module in ("builtins", "__builtin__") and name in _BUILTIN_GLOBALS
        ):
            return super().find_class(module, name)
        raise _RefusedGlobal(
            f"refusing to load {module}.{name}: dataset pickles may only hold numpy arrays and "
            "Python containers"
        )


class _RefusedGlobal(pickle.UnpicklingError):
    """The pickle names something other than numpy arrays and Python containers."""


def load_pickle(path: str, encoding: str = "latin1") -> Any:
    """Unpickle a dataset file that holds only numpy arrays and Python containers.

    ``encoding`` decodes Python 2 ``str`` objects ("latin1" keeps numpy arrays intact; "bytes"
    leaves them as bytes). Anything else in the pickle raises ``pickle.UnpicklingError``.

    Example:
        >>> import os, pickle, tempfile, numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "a.pkl")
        >>> with open(path, "wb") as file:
        ...     pickle.dump({"x": np.arange(3, dtype=np.uint8)}, file)
        >>> load_pickle(path)["x"].tolist()
        [0, 1, 2]
    """
    with open(path, "rb") as file:
        try:
            return _ArrayUnpickler(file, encoding=encoding).load()
        except _RefusedGlobal:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, IndexError, KeyError) as error:
            raise pickle.UnpicklingError(
                f"{path} is corrupt or truncated ({type(error).__name__}: {error}); delete it and "
                "fetch the file again"
            ) from error


def as_text(value: Any) -> str:
    """``value`` as ``str``, decoding bytes (Python 2 pickles) as UTF-8."""
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8")
    return str(value)
