"""mini-ImageNet, tiered-ImageNet, CIFAR-FS and FC100 benchmarks: stored uint8 images, converted
and normalised per task."""

from __future__ import annotations

import numpy as np

from ._augment import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD, normalizer
from ._splits import SPLITS
from ._views import ConvertedView

# name -> (dataset class name in l2l_multi.vision.datasets, mean, std, crop padding)
IMAGE_BENCHMARKS = {
    "mini-imagenet": ("MiniImagenet", IMAGENET_MEAN, IMAGENET_STD, 8),
    "tiered-imagenet": ("TieredImagenet", IMAGENET_MEAN, IMAGENET_STD, 8),
    "cifarfs": ("CIFARFS", CIFAR_MEAN, CIFAR_STD, 4),
    "fc100": ("FC100", CIFAR_MEAN, CIFAR_STD, 4),
}


def image_splits(name: str, root, **dataset_options) -> dict:
    """``{split: ConvertedView}`` with float32 ``[3, H, W]`` standardised images."""
    from .. import datasets

    class_name, mean, std, _ = IMAGE_BENCHMARKS[name]
    cls = getattr(datasets, class_name)
    views = {}
    for split in SPLITS:
        data = cls(root, mode=split, **dataset_options)
        images = data.inputs
        targets = np.asarray(data.targets, np.int64)
        views[split] = ConvertedView(
            images,
            np.arange(len(targets)),
            targets,
            normalizer(mean, std),
            getattr(data, "class_names", None),
        )
    return views
