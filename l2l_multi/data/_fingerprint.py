"""What a TaskDataset's pipeline is made of: its dataset binding and a fingerprint for its state.

A saved stream position (``TaskDataset.state_dict``) is only meaningful for the pipeline that
wrote it: the same seed over another dataset, other transforms or another ``num_tasks`` gives other
tasks. The fingerprint is kept as plain strings and ints so that checkpoints stay JSON.
"""

from __future__ import annotations

import hashlib
import re
import types
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._meta_dataset import MetaDataset

# Reprs of functions and plain objects carry memory addresses, which differ in every process.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_LONGEST_DESCRIPTION = 300
TRANSFORM_SEPARATOR = " ; "


def bind_dataset(dataset: Any, transforms: Sequence[Callable]) -> MetaDataset:
    """The MetaDataset the tasks are drawn from, refusing transforms built on another one.

    A transform "built on" a dataset is one with a ``dataset`` attribute holding a MetaDataset
    (every ``TaskTransform``); plain callables are not checked. When ``dataset`` is not a
    MetaDataset and the transforms were all built on one MetaDataset wrapping that very object
    (learn2learn's ``TaskDataset(raw, [NWays(MetaDataset(raw), 5), ...])``), that MetaDataset is
    used instead of indexing the labels a second time.

    Raises:
        ValueError: a transform was built on another MetaDataset object (a union, a filtered view
            or a second wrapper of the same data count as other objects: their label indices need
            not agree); the message names the transform and both datasets.
    """
    bound = [
        (position, transform, transform.dataset)
        for position, transform in enumerate(transforms)
        if isinstance(getattr(transform, "dataset", None), MetaDataset)
    ]
    if isinstance(dataset, MetaDataset):
        meta = dataset
    else:
        wrappers = {id(own): own for _, _, own in bound if own.dataset is dataset}
        meta = next(iter(wrappers.values())) if len(wrappers) == 1 else MetaDataset(dataset)
    for position, transform, own in bound:
        if own is not meta:
            raise ValueError(
                f"task_transforms[{position}] ({describe_transform(transform)}) was built on "
                f"{own!r} (id {id(own):#x}), but this TaskDataset draws its tasks from {meta!r} "
                f"(id {id(meta):#x}); build every transform on the dataset passed to TaskDataset "
                "(the same MetaDataset object)"
            )
    return meta


def describe_transform(transform: Callable) -> str:
    """A description of ``transform`` that is the same in every process.

    ``TaskTransform``s and other objects with their own ``__repr__`` are described by it (memory
    addresses removed); functions by ``module.qualname``; other objects by their class. Long
    descriptions are shortened to the class name and a digest of the full text.

    Example:
        >>> import numpy as np
        >>> from l2l_multi.data import ArrayDataset, MetaDataset
        >>> from l2l_multi.data.transforms import KShots
        >>> data = MetaDataset(ArrayDataset(np.zeros((4, 1)), np.array([0, 0, 1, 1])))
        >>> describe_transform(KShots(data, 2)), describe_transform(len)
        ('KShots(k=2, replacement=False)', 'builtins.len')
    """
    if isinstance(transform, (types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        text = f"{getattr(transform, '__module__', None) or '?'}.{transform.__qualname__}"
    elif type(transform).__repr__ is object.__repr__:
        text = f"{type(transform).__module__}.{type(transform).__qualname__}"
    else:
        text = _ADDRESS.sub("", repr(transform))
    if len(text) > _LONGEST_DESCRIPTION:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        text = f"{type(transform).__qualname__}(... sha256 {digest})"
    return text


def describe_transforms(transforms: Sequence[Callable]) -> str:
    """Every transform's ``describe_transform``, in order, joined by ``" ; "``."""
    return TRANSFORM_SEPARATOR.join(describe_transform(transform) for transform in transforms)


def describe_dataset(dataset: MetaDataset) -> str:
    """``"<N> samples, <L> labels, labels sha256 <16 hex>"``: the digest covers the labels (their
    reprs, in order) and every sample's label id, not the inputs (hashing those would cost a pass
    over the data)."""
    digest = hashlib.sha256(f"{len(dataset)}\n".encode())
    for label in dataset.labels:
        digest.update(f"{label!r}\n".encode("utf-8", "backslashreplace"))
    digest.update(np.ascontiguousarray(dataset.label_ids, dtype="<i8").tobytes())
    return f"{len(dataset)} samples, {len(dataset.labels)} labels, labels sha256 {digest.hexdigest()[:16]}"


def pipeline_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences between a saved fingerprint and this pipeline's (empty if none)."""
    differences = []
    if saved["seed"] != current["seed"]:
        differences.append(f"seed: saved {saved['seed']}, this one {current['seed']}")
    if saved["num_tasks"] != current["num_tasks"]:
        differences.append(f"num_tasks: saved {saved['num_tasks']}, this one {current['num_tasks']}")
    if saved["dataset"] != current["dataset"]:
        differences.append(f"dataset: saved {saved['dataset']!r}, this one {current['dataset']!r}")
    if saved["transforms"] != current["transforms"]:
        old = saved["transforms"].split(TRANSFORM_SEPARATOR)
        new = current["transforms"].split(TRANSFORM_SEPARATOR)
        if len(old) == len(new):
            differences.extend(
                f"task_transforms[{position}]: saved {a!r}, this one {b!r}"
                for position, (a, b) in enumerate(zip(old, new))
                if a != b
            )
        else:
            differences.append(
                f"task_transforms: saved {saved['transforms']!r}, this one {current['transforms']!r}"
            )
    return differences
