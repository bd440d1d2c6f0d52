"""MetaDataset: a map-style dataset plus its label bookkeeping (its subsets and unions: _derived.py).

Bookkeeping is held as arrays, not per-sample objects: ``label_ids`` (int64[N], the position of
each sample's label in ``labels``) and the label-major grouping ``offsets`` / ``members``
(``members[offsets[c]:offsets[c+1]]`` are the indices of label ``c``, ascending). The
learn2learn-style dictionaries ``labels_to_indices`` and ``indices_to_labels`` are built from
them on first access.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import warnings
import zipfile
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from .._arrays import framework_of, to_numpy, to_python_label
from ._array_access import array_source, source_targets
from ._files import remove_stale_temporaries, temporary_file
from ._kernel_mode import kernels
from ._labels import canonical_labels, read_targets


def _bookkeeping_digest(label_ids: np.ndarray, labels_json: str) -> str:
    """sha256 over a bookkeeping cache's contents (int64 label ids, then the labels' JSON)."""
    digest = hashlib.sha256(np.ascontiguousarray(label_ids, dtype="<i8").tobytes())
    digest.update(labels_json.encode("utf-8"))
    return digest.hexdigest()


class MetaDataset:
    """Wrap a map-style dataset of ``(x, y)`` samples and index its labels for task sampling.

    Args:
        dataset: anything with ``__len__`` and ``__getitem__(i) -> (x, y)``: a torch Dataset, a
            list of pairs, an ``ArrayDataset``. A ``targets`` or ``labels`` attribute (sequence
            of length ``len(dataset)``) is used instead of loading every sample.
        labels_to_indices: optional ``{label: [index, ...]}``, skips the indexing pass.
        indices_to_labels: optional ``{index: label}``, skips the indexing pass.
        bookkeeping_path: optional ``.npz`` file caching the bookkeeping; read when it exists
            and matches the dataset's length, written (atomically) otherwise.

    Attributes:
        labels: the distinct labels (list), sorted when they are comparable.
        label_ids: int64[N], the position in ``labels`` of each sample's label.

    Example:
        >>> import numpy as np
        >>> from l2l_multi.data import ArrayDataset, MetaDataset
        >>> data = MetaDataset(ArrayDataset(np.zeros((6, 2)), np.array([3, 1, 3, 1, 2, 2])))
        >>> data.labels, data.labels_to_indices[3]
        ([1, 2, 3], [0, 2])
    """

    def __init__(
        self,
        dataset: Any,
        labels_to_indices: Mapping[Any, Sequence[int]] | None = None,
        indices_to_labels: Mapping[int, Any] | None = None,
        bookkeeping_path: str | os.PathLike | None = None,
    ) -> None:
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(
                f"dataset must be a map-style dataset (__len__ and __getitem__(i) -> (x, y)), got "
                f"{type(dataset).__name__}"
            )
        size = len(dataset)
        if size == 0:
            raise ValueError("dataset is empty: a MetaDataset needs at least one sample")
        self.dataset = dataset
        self._size = size
        self._dicts: tuple[dict, dict] | None = None
        self._source = array_source(dataset)  # row access to array-backed datasets (fast path)
        self.bookkeeping_path = None if bookkeeping_path is None else os.fspath(bookkeeping_path)
        if labels_to_indices is not None:
            self._from_labels_to_indices(labels_to_indices)
        elif indices_to_labels is not None:
            missing = [i for i in range(size) if i not in indices_to_labels]
            if missing:
                raise ValueError(
                    f"indices_to_labels has no label for {len(missing)} of {size} indices "
                    f"(first: {missing[0]})"
                )
            self._set_bookkeeping(*canonical_labels([indices_to_labels[i] for i in range(size)]))
        elif not (self.bookkeeping_path and self._load_bookkeeping()):
            self.create_bookkeeping()
            if self.bookkeeping_path:
                self._save_bookkeeping()

    # -- bookkeeping ---------------------------------------------------------------------------
    def create_bookkeeping(self) -> None:
        """(Re)build ``labels``, ``label_ids`` and the label grouping from the dataset."""
        inner = self.dataset
        if isinstance(inner, MetaDataset) and len(inner) == self._size:
            self._set_bookkeeping(list(inner.labels), inner.label_ids.copy())
            return
        targets = source_targets(getattr(self, "_source", None))  # a TensorDataset's labels
        if targets is None:
            targets = read_targets(inner, self._size)
        if framework_of(targets) == "torch":
            targets = to_numpy(targets)
        self._set_bookkeeping(*canonical_labels(targets))

    def _set_bookkeeping(self, labels: list, label_ids: np.ndarray) -> None:
        self.labels = labels
        self.label_ids = np.ascontiguousarray(label_ids, dtype=np.int64)
        self.offsets, self.members = kernels().group_by_label(self.label_ids, len(labels))
        self._dicts = None

    def _from_labels_to_indices(self, table: Mapping[Any, Sequence[int]]) -> None:
        labels = list(table)
        label_ids = np.full(self._size, -1, dtype=np.int64)
        for position, label in enumerate(labels):
            if not isinstance(label, Hashable):
                raise ValueError(f"labels_to_indices has an unhashable label {label!r}")
            indices = np.asarray(table[label], dtype=np.int64)
            if indices.size and (indices.min() < 0 or indices.max() >= self._size):
                raise ValueError(f"labels_to_indices[{label!r}] holds an index outside [0, {self._size})")
            if np.any(label_ids[indices] != -1) or len(np.unique(indices)) != len(indices):
                raise ValueError(f"labels_to_indices lists an index twice (label {label!r})")
            label_ids[indices] = position
        if np.any(label_ids == -1):
            first = int(np.flatnonzero(label_ids == -1)[0])
            raise ValueError(f"labels_to_indices gives no label to index {first}")
        self._set_bookkeeping(labels, label_ids)

    def _load_bookkeeping(self) -> bool:
        directory = os.path.dirname(os.path.abspath(self.bookkeeping_path))
        remove_stale_temporaries(directory, f".{glob.escape(os.path.basename(self.bookkeeping_path))}.*.part")
        if not os.path.exists(self.bookkeeping_path):
            return False
        try:
            with np.load(self.bookkeeping_path, allow_pickle=False) as stored:
                label_ids = stored["label_ids"]
                labels_json = str(stored["labels_json"])
                digest = str(stored["digest"]) if "digest" in stored.files else None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            warnings.warn(
                f"bookkeeping_path={self.bookkeeping_path!r} is unreadable ({error}); rebuilding it",
                stacklevel=3,
            )
            return False
        if digest != _bookkeeping_digest(label_ids, labels_json):
            why = (
                "has no digest (written by an older version)"
                if digest is None
                else "fails its digest check (damaged)"
            )
            warnings.warn(f"bookkeeping_path={self.bookkeeping_path!r} {why}; rebuilding it", stacklevel=3)
            return False
        if len(label_ids) != self._size:
            return False  # stale cache for another dataset: rebuild and overwrite
        self._set_bookkeeping(json.loads(labels_json), label_ids)
        return True

    def _save_bookkeeping(self) -> None:
        try:
            labels_json = json.dumps(self.labels)
            round_trips = json.loads(labels_json) == self.labels  # tuples would come back lists
        except TypeError:
            round_trips = False
        if not round_trips:
            raise ValueError(
                f"bookkeeping_path={self.bookkeeping_path!r}: only ints, floats and strings "
                "survive the JSON cache; these labels cannot be cached"
            )
        directory = os.path.dirname(os.path.abspath(self.bookkeeping_path))
        os.makedirs(directory, exist_ok=True)
        handle, temporary = temporary_file(directory, os.path.basename(self.bookkeeping_path))
        try:
            with os.fdopen(handle, "wb") as file:
                np.savez(
                    file,
                    label_ids=self.label_ids,
                    labels_json=np.array(labels_json),
                    digest=np.array(_bookkeeping_digest(self.label_ids, labels_json)),
                )
            os.replace(temporary, self.bookkeeping_path)
        except BaseException:
            os.unlink(temporary)
            raise

    # -- learn2learn-compatible views ----------------------------------------------------------
    def _build_dicts(self) -> tuple[dict, dict]:
        if self._dicts is None:
            labels_to_indices = {
                label: self.members[self.offsets[c] : self.offsets[c + 1]].tolist()
                for c, label in enumerate(self.labels)
            }
            indices_to_labels = dict(enumerate(self.labels[c] for c in self.label_ids.tolist()))
            self._dicts = (labels_to_indices, indices_to_labels)
        return self._dicts

    @property
    def labels_to_indices(self) -> dict:
        """``{label: [index, ...]}`` (indices ascending)."""
        return self._build_dicts()[0]

    @property
    def indices_to_labels(self) -> dict:
        """``{index: label}``."""
        return self._build_dicts()[1]

    def label_positions(self, labels: Sequence[Any], argument: str = "labels") -> np.ndarray:
        """int64 positions in ``self.labels`` of the given label values; unknown labels raise."""
        position = {label: i for i, label in enumerate(self.labels)}
        out = []
        for label in labels:
            label = to_python_label(label)
            if label not in position:
                shown = self.labels[:10]
                raise ValueError(
                    f"{argument} contains {label!r}, which is not a label of this dataset "
                    f"(labels: {shown}{' ...' if len(self.labels) > 10 else ''})"
                )
            out.append(position[label])
        return np.asarray(out, dtype=np.int64)

    # -- the dataset itself --------------------------------------------------------------------
    def __len__(self) -> int:
        return self._size

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    def get_batch(self, indices: np.ndarray):
        """``(inputs[m, ...], targets[m])`` of the samples at int64 ``indices[m]``, in the wrapped
        dataset's array type (numpy or torch), when ``supports_batches``; else TypeError."""
        if self._source is None:
            raise TypeError(
                f"{type(self.dataset).__name__} has no batched access: its samples are "
                "not provably rows of arrays (see supports_batches)"
            )
        return self._source.gather(indices)

    def numpy_arrays(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Zero-copy numpy views ``(inputs[N, ...], targets[N])`` of the wrapped dataset's arrays,
        or None when it has none or batched access is off now (then use ``get_batch``)."""
        return None if self._source is None else self._source.numpy_arrays()

    @property
    def supports_batches(self) -> bool:
        """Whether ``get_batch`` serves now: the wrapped dataset is array-backed (our datasets, a
        ``TensorDataset`` of two tensors, ``.data``/``.targets`` rows without transforms)."""
        return self._source is not None and self._source.available()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._size} samples, {len(self.labels)} labels)"
