"""CIFAR-FS (Bertinetto et al., 2019) and FC100 (Oreshkin et al., 2018), built from CIFAR-100."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from importlib import resources

import numpy as np

from ._common import ImageArrayDataset, check_mode, load_pickle
from ._download import download_file, extract_archive, verify_file

CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
# The md5 is published on the CIFAR page; the sha256 (of the same 169,001,437 bytes) is the one
# Keras and torchvision's prototype datasets check.
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
CIFAR100_SHA256 = "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"
_MODES = {"train": "train", "validation": "val", "val": "val", "test": "test"}


def read_split(benchmark: str, mode: str) -> list:
    """A class split shipped in ``l2l_multi/vision/splits/<benchmark>/<mode>.json``.

    Args:
        benchmark: "cifar-fs" (a list of ``[superclass, class]`` pairs) or "fc100" (superclasses).
        mode: "train", "validation" (alias "val") or "test".

    Example:
        >>> len(read_split("cifar-fs", "train")), read_split("fc100", "test")[:2]
        (64, ['aquatic_mammals', 'insects'])
    """
    if benchmark not in ("cifar-fs", "fc100"):
        raise ValueError(f"benchmark must be 'cifar-fs' or 'fc100', got {benchmark!r}")
    name = f"{check_mode(mode, _MODES)}.json"
    text = resources.files("l2l_multi.vision").joinpath("splits", benchmark, name).read_text(encoding="utf-8")
    return json.loads(text)


def load_cifar100(root: str | os.PathLike, download: bool = False) -> dict:
    """CIFAR-100's train and test sets merged (60,000 images, 600 per fine class).

    Reads ``root/cifar-100-python/{train,test,meta}``; ``download=True`` fetches and safely
    extracts the archive first when that folder is missing (sha256-checked).

    Returns:
        dict with ``images`` uint8 ``[60000, 32, 32, 3]`` (train rows first), ``fine`` and
        ``coarse`` int64 ``[60000]``, ``fine_names`` and ``coarse_names`` (lists of str).
    """
    root = os.path.expanduser(os.fspath(root))
    folder = os.path.join(root, "cifar-100-python")
    if not os.path.isdir(folder):
        if not download:
            raise FileNotFoundError(f"CIFAR-100 folder {folder} not found; pass download=True to fetch it")
        archive = os.path.join(root, "cifar-100-python.tar.gz")
        if not verify_file(archive, CIFAR100_SHA256, md5=CIFAR100_MD5):
            download_file(CIFAR100_URL, archive, CIFAR100_SHA256)
        extract_archive(archive, root)
    meta = load_pickle(os.path.join(folder, "meta"))
    parts = [load_pickle(os.path.join(folder, name)) for name in ("train", "test")]
    images = np.concatenate([np.asarray(part["data"], dtype=np.uint8) for part in parts])
    return {
        # Rows are stored as 3 planes of 32x32 (CHW); HWC is what image libraries expect.
        "images": images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1),
        "fine": np.concatenate([np.asarray(part["fine_labels"], dtype=np.int64) for part in parts]),
        "coarse": np.concatenate([np.asarray(part["coarse_labels"], dtype=np.int64) for part in parts]),
        "fine_names": [str(name) for name in meta["fine_label_names"]],
        "coarse_names": [str(name) for name in meta["coarse_label_names"]],
    }


class _CIFARSplit(ImageArrayDataset):
    def __init__(
        self,
        root: str | os.PathLike,
        mode: str,
        transform: Callable | None,
        target_transform: Callable | None,
        download: bool,
    ) -> None:
        self.root = os.path.expanduser(os.fspath(root))
        self.mode = check_mode(mode, _MODES)
        cifar = load_cifar100(self.root, download)
        wanted = self._classes(cifar)
        position = {name: index for index, name in enumerate(cifar["fine_names"])}
        unknown = [name for name in wanted if name not in position]
        if unknown:
            raise ValueError(
                f"{type(self).__name__} split {self.mode}: classes {unknown} are not in CIFAR-100"
            )
        class_names = sorted(wanted)
        label_of = np.full(len(cifar["fine_names"]), -1, dtype=np.int64)
        label_of[[position[name] for name in class_names]] = np.arange(len(class_names))
        labels = label_of[cifar["fine"]]
        # Class-major order (stable: each class's 500 train images, then its 100 test images).
        rows = np.flatnonzero(labels >= 0)
        rows = rows[np.argsort(labels[rows], kind="stable")]
        super().__init__(cifar["images"][rows], labels[rows], class_names, transform, target_transform)

    def _classes(self, cifar: dict) -> list[str]:
        raise NotImplementedError


class CIFARFS(_CIFARSplit):
    """CIFAR-FS: CIFAR-100's 100 classes split 64/16/20 (Bertinetto et al., 2019), 32x32 RGB.

    Built from ``root/cifar-100-python`` (train and test merged: 600 images per class). The class
    lists are torchmeta's encoding of Bertinetto's split, shipped in
    ``l2l_multi/vision/splits/cifar-fs/``.

    Labels: ``0..K-1`` in sorted class-name order (``class_names``); samples are class-major.

    Args:
        root: folder holding (or receiving, with ``download=True``) ``cifar-100-python/``.
        mode: "train", "validation" (alias "val") or "test".
        transform: optional callable applied to each input by ``__getitem__``.
        target_transform: optional callable applied to each target by ``__getitem__``.
        download: fetch and extract CIFAR-100 (161 MB, sha256-checked) when missing.

    Attributes:
        inputs (alias ``data``): uint8 ``[K * 600, 32, 32, 3]``; targets: int64.

    Example:
        >>> read_split("cifar-fs", "val")[0]  # CIFARFS(root) needs CIFAR-100 on disk
        ['aquatic_mammals', 'beaver']
    """

    def __init__(
        self,
        root: str | os.PathLike,
        mode: str = "train",
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        download: bool = False,
    ) -> None:
        super().__init__(root, mode, transform, target_transform, download)

    def _classes(self, cifar: dict) -> list[str]:
        return [name for _, name in read_split("cifar-fs", self.mode)]


class FC100(_CIFARSplit):
    """FC100: CIFAR-100 split by superclass, 12/4/4 superclasses = 60/20/20 classes (Oreshkin et al.).

    Built from ``root/cifar-100-python`` (train and test merged: 600 images per class); the
    superclass lists (torchmeta's) are shipped in ``l2l_multi/vision/splits/fc100/``.

    Labels: ``0..K-1`` in sorted fine-class-name order (``class_names``); samples are class-major.
    ``coarse_class_names`` lists the split's superclasses.

    Args:
        root: folder holding (or receiving, with ``download=True``) ``cifar-100-python/``.
        mode: "train", "validation" (alias "val") or "test".
        transform: optional callable applied to each input by ``__getitem__``.
        target_transform: optional callable applied to each target by ``__getitem__``.
        download: fetch and extract CIFAR-100 (161 MB, sha256-checked) when missing.

    Attributes:
        inputs (alias ``data``): uint8 ``[K * 600, 32, 32, 3]``; targets: int64.

    Example:
        >>> read_split("fc100", "val")
        ['large_carnivores', 'large_omnivores_and_herbivores', 'non-insect_invertebrates', 'small_mammals']
    """

    def __init__(
        self,
        root: str | os.PathLike,
        mode: str = "train",
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        download: bool = False,
    ) -> None:
        super().__init__(root, mode, transform, target_transform, download)

    def _classes(self, cifar: dict) -> list[str]:
        self.coarse_class_names = list(read_split("fc100", self.mode))
        coarse_index = {name: index for index, name in enumerate(cifar["coarse_names"])}
        unknown = [name for name in self.coarse_class_names if name not in coarse_index]
        if unknown:
            raise ValueError(f"FC100 split {self.mode}: superclasses {unknown} are not in CIFAR-100")
        wanted = {coarse_index[name] for name in self.coarse_class_names}
        fine_of_coarse = {}
        for fine, coarse in zip(cifar["fine"].tolist(), cifar["coarse"].tolist()):
            fine_of_coarse[fine] = coarse
        return [
            cifar["fine_names"][fine] for fine, coarse in sorted(fine_of_coarse.items()) if coarse in wanted
        ]
