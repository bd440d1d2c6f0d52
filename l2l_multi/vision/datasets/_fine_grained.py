"""Shared pieces of the Meta-Dataset fine-grained loaders: class split, cached decoding, errors."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from ._common import cache_folders, fingerprint, load_cached, save_cached

MODES = {
    "train": "train",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
    "test": "test",
    "all": "all",
}
# Meta-Dataset's DatasetConverter default seed (dataset_conversion/dataset_to_records.py).
META_DATASET_SEED = 22


def meta_dataset_split(
    num_train: int, num_valid: int, num_test: int, seed: int = META_DATASET_SEED
) -> dict[str, np.ndarray]:
    """Meta-Dataset's class split (Triantafillou et al., 2020) over class indices ``0 .. n-1``.

    Reproduces ``gen_rand_split_inds`` seeded with 22: draw the train+validation classes without
    replacement, the rest are test; then draw train among those, the rest are validation. Classes
    are indexed in the order Meta-Dataset sorts them (class id, or sorted class name). The result
    equals the lists learn2learn hard-codes (checked for CUB, VGG Flower, DTD, Quickdraw, Fungi).

    Returns:
        ``{"train", "validation", "test"}`` -> int64 arrays of class indices, each sorted.

    Example:
        >>> split = meta_dataset_split(71, 15, 16)
        >>> (split["test"][:5] + 1).tolist(), [len(split[mode]) for mode in ("train", "validation", "test")]
        ([5, 9, 15, 19, 35], [71, 15, 16])
    """
    rng = np.random.RandomState(seed)  # the legacy generator: the published split depends on its stream
    total = num_train + num_valid + num_test
    trainval = rng.choice(total, num_train + num_valid, replace=False)
    train = rng.choice(trainval, num_train, replace=False)
    return {
        "train": np.sort(train).astype(np.int64),
        "validation": np.setdiff1d(trainval, train).astype(np.int64),
        "test": np.setdiff1d(np.arange(total), trainval).astype(np.int64),
    }


def select_classes(split: dict[str, np.ndarray], mode: str) -> np.ndarray:
    """Class indices of ``mode`` ("all" = every class), sorted."""
    if mode == "all":
        return np.sort(np.concatenate(list(split.values())))
    return split[mode]


def check_image_size(image_size: int) -> int:
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    return image_size


def missing_file_error(dataset: str, path: str, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{dataset}: {what} {path} not found; pass download=True to fetch it, or put the dataset's files "
        "in root"
    )


def _decode_image(path: str, image_size: int, crop_bottom: int) -> np.ndarray:
    """One image file as uint8 ``[S, S, 3]``."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        if crop_bottom:
            image = image.crop((0, 0, image.width, max(1, image.height - crop_bottom)))
        if image.size != (image_size, image_size):
            image = image.resize((image_size, image_size), Image.Resampling.LANCZOS)
        return np.asarray(image, dtype=np.uint8)


def decode_cached(
    name: str,
    root: str,
    cache_dir: str | os.PathLike | None,
    paths: Sequence[str],
    image_size: int,
    crop_bottom: int = 0,
) -> np.ndarray:
    """The images at ``paths`` decoded to uint8 ``[N, S, S, 3]``, from the cache when it holds them.

    The cache file is named by dataset, size and a key over the relative paths and file sizes, so a
    changed file list decodes again; it is written atomically (see ``save_cached``).
    """
    key = fingerprint(
        f"{os.path.relpath(path, root)} {os.path.getsize(path)} {crop_bottom}" for path in paths
    )
    filename = f"{name}-{image_size}px-{key}.npy"
    folders = cache_folders(root, cache_dir, name)
    cached = load_cached(folders, filename)
    if cached is not None and cached.shape == (len(paths), image_size, image_size, 3):
        return cached
    images = np.empty((len(paths), image_size, image_size, 3), dtype=np.uint8)
    for index, path in enumerate(
        tqdm(paths, desc=f"decoding {name}", unit="image", disable=len(paths) < 1000)
    ):
        images[index] = _decode_image(path, image_size, crop_bottom)
    save_cached(folders, filename, images)
    return images


def restrict(
    paths: Sequence[str], classes: Sequence[int], class_names: Sequence[str], chosen: np.ndarray
) -> tuple[list[str], np.ndarray, list[str]]:
    """Keep the images whose class index is in ``chosen`` (sorted); labels become positions in it.

    Example:
        >>> restrict(["a", "b", "c"], [0, 2, 1], ["x", "y", "z"], np.array([1, 2]))
        (['b', 'c'], array([1, 0]), ['y', 'z'])
    """
    position = {int(index): label for label, index in enumerate(chosen)}
    kept = [(path, position[int(index)]) for path, index in zip(paths, classes) if int(index) in position]
    targets = np.array([label for _, label in kept], dtype=np.int64)
    return [path for path, _ in kept], targets, [class_names[int(index)] for index in chosen]


def class_split(count: int, published: tuple[int, int, int], dataset: str) -> dict[str, np.ndarray]:
    """``meta_dataset_split(*published)`` when the dataset has all its ``sum(published)`` classes;
    for a reduced copy (tests, subsets) the same procedure over ~70/15/15 of its ``count`` classes.

    Example:
        >>> [len(part) for part in class_split(3, (140, 30, 30), "CUBirds200").values()]
        [1, 1, 1]
    """
    if count == sum(published):
        return meta_dataset_split(*published)
    if count < 3:
        raise ValueError(
            f"{dataset}: need at least 3 classes to split into train/validation/test, found {count}"
        )
    held_out = max(1, round(count * published[2] / sum(published)))
    return meta_dataset_split(count - 2 * held_out, held_out, held_out)
