"""learn2learn's per-benchmark builders (``omniglot_tasksets`` etc.): datasets and transforms.

Each returns what learn2learn's does, ``((train, validation, test) datasets, (train, validation,
test) task-transform lists)``, for callers that build their own ``TaskDataset``s. They are
``get_tasksets`` taken apart, so splits, image conversion and transforms are the same; their
arguments are ``get_tasksets``'s (ways and samples per class of training and of validation/test
tasks, ``root``, ``device``; other keywords go to ``get_tasksets``). Each returns three
``MetaDataset``s and three lists of task transforms: ``TaskDataset(dataset, transforms)`` gives
the tasks ``get_tasksets`` would (X float32 ``[ways * samples, C, H, W]``, y int labels).
"""

from __future__ import annotations

from typing import Any


def _parts(name: str, train_ways, train_samples, test_ways, test_samples, root, device, **kwargs) -> tuple:
    from . import get_tasksets  # the package imports this module

    tasksets = get_tasksets(
        name, train_ways, train_samples, test_ways, test_samples, root=root, device=device, **kwargs
    )
    return tuple(t.dataset for t in tasksets), tuple(list(t.task_transforms) for t in tasksets)


def omniglot_tasksets(
    train_ways: int,
    train_samples: int,
    test_ways: int,
    test_samples: int,
    root: str,
    device: Any = None,
    **kwargs: Any,
) -> tuple:
    """Omniglot's ``((train, validation, test) MetaDatasets, (three transform lists))``.

    Example (needs the Omniglot archives in ``root``):
        >>> datasets, transforms = omniglot_tasksets(5, 2, 5, 2, root="path/to/omniglot")  # doctest: +SKIP
    """
    return _parts("omniglot", train_ways, train_samples, test_ways, test_samples, root, device, **kwargs)


def mini_imagenet_tasksets(
    train_ways: int = 5,
    train_samples: int = 10,
    test_ways: int = 5,
    test_samples: int = 10,
    root: str = "~/data",
    data_augmentation: str | None = None,
    device: Any = None,
    **kwargs: Any,
) -> tuple:
    """mini-ImageNet's ``((train, validation, test) MetaDatasets, (three transform lists))``.

    ``data_augmentation`` (None, "normal", "lee2019") adds an augmenting transform to the training
    list. Example: ``datasets, transforms = mini_imagenet_tasksets(root="path/to/mini-imagenet")``.
    """
    return _parts(
        "mini-imagenet",
        train_ways,
        train_samples,
        test_ways,
        test_samples,
        root,
        device,
        data_augmentation=data_augmentation,
        **kwargs,
    )


def tiered_imagenet_tasksets(
    train_ways: int = 5,
    train_samples: int = 10,
    test_ways: int = 5,
    test_samples: int = 10,
    root: str = "~/data",
    data_augmentation: str | None = None,
    device: Any = None,
    **kwargs: Any,
) -> tuple:
    """tiered-ImageNet's ``((train, validation, test) MetaDatasets, (three transform lists))``.

    ``data_augmentation`` as for ``mini_imagenet_tasksets``. Example:
    ``datasets, transforms = tiered_imagenet_tasksets(root="path/to/tiered-imagenet")``.
    """
    return _parts(
        "tiered-imagenet",
        train_ways,
        train_samples,
        test_ways,
        test_samples,
        root,
        device,
        data_augmentation=data_augmentation,
        **kwargs,
    )


def cifarfs_tasksets(
    train_ways: int = 5,
    train_samples: int = 10,
    test_ways: int = 5,
    test_samples: int = 10,
    root: str = "~/data",
    device: Any = None,
    **kwargs: Any,
) -> tuple:
    """CIFAR-FS's ``((train, validation, test) MetaDatasets, (three transform lists))``.

    Example: ``datasets, transforms = cifarfs_tasksets(root="path/to/cifarfs")``.
    """
    return _parts("cifarfs", train_ways, train_samples, test_ways, test_samples, root, device, **kwargs)


def fc100_tasksets(
    train_ways: int = 5,
    train_samples: int = 10,
    test_ways: int = 5,
    test_samples: int = 10,
    root: str = "~/data",
    device: Any = None,
    **kwargs: Any,
) -> tuple:
    """FC100's ``((train, validation, test) MetaDatasets, (three transform lists))``.

    Example: ``datasets, transforms = fc100_tasksets(root="path/to/fc100")``.
    """
    return _parts("fc100", train_ways, train_samples, test_ways, test_samples, root, device, **kwargs)
