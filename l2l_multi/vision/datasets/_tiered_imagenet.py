"""tiered-ImageNet (Ren et al., 2018) from its released pickles of PNG-encoded images."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ._common import (
    ImageArrayDataset,
    as_text,
    cache_folders,
    check_mode,
    fingerprint,
    load_cached,
    load_pickle,
    save_cached,
)

_MODES = {"train": "train", "validation": "val", "val": "val", "test": "test"}


def _png_bytes(item: Any) -> bytes:
    """The PNG bytes of one entry: the release stores uint8 arrays; bytes / str also occur."""
    if isinstance(item, np.ndarray):
        return item.tobytes()
    if isinstance(item, str):
        return item.encode("latin1")  # a Python 2 str decoded as latin1 round-trips exactly
    return bytes(item)


def _decode_png(item: Any) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(_png_bytes(item))) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


class TieredImagenet(ImageArrayDataset):
    """One split of tiered-ImageNet: 608 classes in 34 categories, 84x84 RGB (351/97/160 classes).

    Reads the release's ``root/{mode}_images_png.pkl`` (a sequence of PNG-encoded images) and
    ``root/{mode}_labels.pkl`` (dict with ``label_specific``, ``label_general``,
    ``label_specific_str``, ``label_general_str``). The PNGs are decoded once and cached as
    ``.npy`` (in ``root``, else ``~/.cache/l2l_multi/tiered-imagenet``, or ``cache_dir``).
    Pickles go through an unpickler that accepts only numpy arrays and containers.

    Labels: ``label_specific`` as released (class ``i`` is ``class_names[i]``); the category of
    each sample is ``coarse_targets`` (``label_general``, names in ``coarse_class_names``).

    Args:
        root: the folder with the pickles.
        mode: "train", "validation" (alias "val") or "test".
        transform: optional callable applied to each input by ``__getitem__``.
        target_transform: optional callable applied to each target by ``__getitem__``.
        download: not supported (ImageNet's terms); True raises.
        cache_dir: where the decoded array is cached.

    Attributes:
        inputs (alias ``data``): uint8 ``[N, 84, 84, 3]`` (RGB); targets, coarse_targets: int64 ``[N]``.

    Example:
        >>> import io, os, pickle, tempfile, numpy as np
        >>> from PIL import Image
        >>> root = tempfile.mkdtemp()
        >>> png = io.BytesIO(); Image.new("RGB", (84, 84), (255, 0, 0)).save(png, "PNG")
        >>> images = [np.frombuffer(png.getvalue(), np.uint8)] * 2
        >>> labels = {"label_specific": np.array([1, 0]), "label_general": np.array([0, 0]),
        ...           "label_specific_str": ["n01", "n02"], "label_general_str": ["animal"]}
        >>> for name, value in (("test_images_png.pkl", images), ("test_labels.pkl", labels)):
        ...     with open(os.path.join(root, name), "wb") as file:
        ...         pickle.dump(value, file)
        >>> data = TieredImagenet(root, mode="test")
        >>> data.inputs.shape, data.inputs[0, 0, 0].tolist(), data.targets.tolist(), data.class_names
        ((2, 84, 84, 3), [255, 0, 0], [1, 0], ['n01', 'n02'])
    """

    def __init__(
        self,
        root: str | os.PathLike,
        mode: str = "train",
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        download: bool = False,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        self.root = os.path.expanduser(os.fspath(root))
        self.mode = check_mode(mode, _MODES)
        if download:
            raise ValueError(
                "download=True is not supported for tiered-ImageNet (ImageNet's terms); put "
                f"{self.mode}_images_png.pkl and {self.mode}_labels.pkl in {self.root}"
            )
        images_path = os.path.join(self.root, f"{self.mode}_images_png.pkl")
        labels_path = os.path.join(self.root, f"{self.mode}_labels.pkl")
        for path in (images_path, labels_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"tiered-ImageNet file {path} not found")
        # encoding="bytes" keeps Python 2 PNG strings intact; keys are decoded below.
        labels = {as_text(key): value for key, value in load_pickle(labels_path, encoding="bytes").items()}
        for key in ("label_specific", "label_general"):
            if key not in labels:
                raise ValueError(f"{labels_path}: missing the key {key!r} (has {sorted(labels)})")
        targets = np.asarray(labels["label_specific"], dtype=np.int64)
        self.coarse_targets = np.asarray(labels["label_general"], dtype=np.int64)
        count = int(targets.max()) + 1 if len(targets) else 0
        names = labels.get("label_specific_str")
        class_names = (
            [as_text(name) for name in names] if names is not None else [str(label) for label in range(count)]
        )
        coarse = labels.get("label_general_str")
        self.coarse_class_names = [as_text(name) for name in coarse] if coarse is not None else None

        stat = os.stat(images_path)
        key = fingerprint([f"{self.mode} {stat.st_size} {stat.st_mtime_ns}"])
        filename = f"tiered-imagenet-{self.mode}-{key}.npy"
        folders = cache_folders(self.root, cache_dir, "tiered-imagenet")
        images = load_cached(folders, filename)
        if images is None or len(images) != len(targets):
            encoded = load_pickle(images_path, encoding="bytes")
            if len(encoded) != len(targets):
                raise ValueError(
                    f"{images_path} holds {len(encoded)} images but {labels_path} {len(targets)} labels"
                )
            first = _decode_png(encoded[0]) if len(encoded) else np.zeros((84, 84, 3), np.uint8)
            images = np.empty((len(encoded), *first.shape), dtype=np.uint8)
            for index, item in enumerate(
                tqdm(
                    encoded,
                    desc=f"decoding tiered-ImageNet {self.mode}",
                    unit="image",
                    disable=len(encoded) < 1000,
                )
            ):
                images[index] = _decode_png(item)
            save_cached(folders, filename, images)
        super().__init__(images, targets, class_names, transform, target_transform)
