"""Standard few-shot benchmarks: ``list_tasksets()`` and ``get_tasksets(name, ...)``.

Each benchmark has disjoint train / validation / test class sets (the community's splits,
shipped in ``l2l_multi/vision/splits``), images converted to float32 NCHW for the model, and
seeded task streams that produce arrays of the current backend.
"""

from __future__ import annotations

import os
from collections import namedtuple
from typing import Any

import numpy as np

from ...data import MetaDataset, TaskDataset, UnionMetaDataset
from ...data._random import check_seed
from ...data.transforms import ConsecutiveLabels, FusedNWaysKShots, LoadData, RemapLabels
from ._augment import AUGMENTATIONS, augmenter
from ._images import IMAGE_BENCHMARKS, image_splits
from ._omniglot import omniglot_splits
from ._splits import SPLITS

BenchmarkTasksets = namedtuple("BenchmarkTasksets", ("train", "validation", "test"))
_NAMES = ("omniglot",) + tuple(IMAGE_BENCHMARKS)


def list_tasksets() -> list[str]:
    """Names accepted by ``get_tasksets``.

    Example:
        >>> list_tasksets()
        ['omniglot', 'mini-imagenet', 'tiered-imagenet', 'cifarfs', 'fc100']
    """
    return list(_NAMES)


def _check_positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive int")
    return value


def _check_train_splits(train_splits: Any) -> tuple[str, ...]:
    allowed = (("train",), ("train", "validation"))
    value = (train_splits,) if isinstance(train_splits, str) else tuple(train_splits or ())
    if value not in allowed:
        raise ValueError(f"train_splits={train_splits!r} is not one of {allowed}")
    return value


def get_tasksets(
    name: str,
    train_ways: int = 5,
    train_samples: int = 10,
    test_ways: int = 5,
    test_samples: int = 10,
    num_tasks: int = -1,
    root: str = "~/data",
    device: Any = None,
    data_augmentation: str | None = None,
    seed: int | None = None,
    train_splits: tuple[str, ...] = ("train",),
    **kwargs: Any,
) -> BenchmarkTasksets:
    """The standard benchmark ``name`` as ``BenchmarkTasksets(train, validation, test)``.

    Args:
        name: one of ``list_tasksets()`` ("cifar-fs" is accepted for "cifarfs").
        train_ways: classes per training task.
        train_samples: samples per class of a training task (support plus query, split with
            ``l2l.data.partition_task``).
        test_ways: classes per validation and test task.
        test_samples: samples per class of a validation and test task.
        num_tasks: tasks per split (-1: an endless stream).
        root: folder holding the dataset's files (``~`` is expanded).
        device: where the task arrays are placed (a torch or jax device).
        data_augmentation: None, "normal" or "lee2019" (training tasks only; not for Omniglot);
            "normalize" (learn2learn's name for no augmentation) is None.
        seed: seeds the three task streams (seed, seed + 1, seed + 2), an int in
            ``[0, 2**64 - 3]``; None draws fresh seeds.
        train_splits: the splits whose classes the training stream draws from: ``("train",)``
            (the default), or ``("train", "validation")`` for a final run as in Snell et al. (2017),
            who train Omniglot models on 1200 characters (4800 classes with rotations). The
            validation stream is unchanged, so it no longer measures held-out classes then.
        kwargs: passed to the dataset (e.g. ``cache_dir=`` for Omniglot's decoded-image cache,
            ``download=True``).

    Returns:
        A namedtuple of three ``TaskDataset``s; each task is ``(X, y)`` with ``X`` float32
        ``[ways * samples, C, H, W]`` (Omniglot: ``[.., 1, 28, 28]`` in [0, 1]; others
        standardised per channel) and ``y`` integer labels ``0 .. ways-1``, as arrays of the
        backend current when this is called.

    Example (needs the Omniglot archives in ``root``):
        >>> import l2l_multi as l2l  # doctest: +SKIP
        >>> tasksets = l2l.vision.benchmarks.get_tasksets("omniglot", root="data/omniglot")  # doctest: +SKIP
        >>> X, y = tasksets.train.sample()  # doctest: +SKIP
    """
    name = {"cifar-fs": "cifarfs"}.get(name, name)
    if name not in _NAMES:
        raise ValueError(f"name={name!r} is not a known benchmark; available: {', '.join(_NAMES)}")
    for argument, value in (
        ("train_ways", train_ways),
        ("train_samples", train_samples),
        ("test_ways", test_ways),
        ("test_samples", test_samples),
    ):
        _check_positive(argument, value)
    if seed is not None:
        seed = check_seed(seed, span=len(SPLITS))  # before any data is read
    if data_augmentation == "normalize":  # learn2learn's "scale only, no augmentation"; inputs
        data_augmentation = None  # here are always standardised, so it is None
    if data_augmentation not in AUGMENTATIONS:
        raise ValueError(f"data_augmentation={data_augmentation!r} is not one of {AUGMENTATIONS}")
    train_splits = _check_train_splits(train_splits)
    root = os.path.expanduser(str(root))
    if name == "omniglot":
        if data_augmentation is not None:
            raise ValueError("data_augmentation is not used for omniglot (rotations are classes); pass None")
        views = omniglot_splits(root, cache_dir=kwargs.pop("cache_dir", None), **kwargs)
        padding = 0
    else:
        views = image_splits(name, root, **kwargs)
        padding = IMAGE_BENCHMARKS[name][3]
    datasets = {}
    for split in SPLITS:  # every split is checked before any task stream is made
        if split == "train" and len(train_splits) > 1:
            dataset = datasets[split] = UnionMetaDataset([views[s] for s in train_splits])
        else:
            dataset = datasets[split] = MetaDataset(views[train_splits[0] if split == "train" else split])
        ways, samples = (train_ways, train_samples) if split == "train" else (test_ways, test_samples)
        prefix = "train" if split == "train" else "test"
        if ways > len(dataset.labels):
            raise ValueError(
                f"{prefix}_ways={ways} but the {split} split of {name} has {len(dataset.labels)} classes"
            )
        sizes = np.diff(dataset.offsets)
        if samples > sizes.min():
            smallest = int(sizes.argmin())
            raise ValueError(
                f"{prefix}_samples={samples} but class {dataset.labels[smallest]!r} of the {split} split "
                f"of {name} has only {int(sizes[smallest])} samples"
            )
    tasksets = []
    for position, split in enumerate(SPLITS):
        dataset = datasets[split]
        ways, samples = (train_ways, train_samples) if split == "train" else (test_ways, test_samples)
        transforms = [
            FusedNWaysKShots(dataset, n=ways, k=samples),
            LoadData(dataset),
            RemapLabels(dataset),
            ConsecutiveLabels(dataset),
        ]
        if split == "train" and data_augmentation is not None:
            transforms.append(augmenter(data_augmentation, padding))
        tasksets.append(
            TaskDataset(
                dataset,
                transforms,
                num_tasks=num_tasks,
                device=device,
                seed=None if seed is None else seed + position,
            )
        )
    return BenchmarkTasksets(*tasksets)


from ._learn2learn import cifarfs_tasksets as cifarfs_tasksets  # noqa: E402  (they call get_tasksets)
from ._learn2learn import fc100_tasksets as fc100_tasksets  # noqa: E402
from ._learn2learn import mini_imagenet_tasksets as mini_imagenet_tasksets  # noqa: E402
from ._learn2learn import omniglot_tasksets as omniglot_tasksets  # noqa: E402
from ._learn2learn import tiered_imagenet_tasksets as tiered_imagenet_tasksets  # noqa: E402

__all__ = [
    "BenchmarkTasksets",
    "cifarfs_tasksets",
    "fc100_tasksets",
    "get_tasksets",
    "list_tasksets",
    "mini_imagenet_tasksets",
    "omniglot_tasksets",
    "tiered_imagenet_tasksets",
]
