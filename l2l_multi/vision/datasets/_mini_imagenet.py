"""mini-ImageNet (Vinyals et al., 2016; Ravi & Larochelle, 2017 split) from either common release."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from importlib import resources

import numpy as np
from tqdm.auto import tqdm

from ._common import (
    ImageArrayDataset,
    cache_folders,
    check_mode,
    fingerprint,
    load_cached,
    load_pickle,
    save_cached,
)

_MODES = {"train": "train", "validation": "validation", "val": "validation", "test": "test"}
_CSV_NAMES = {"train": "train", "validation": "val", "test": "test"}
SIZE = 84


def read_split_csv(path: str | os.PathLike | None, mode: str) -> list[tuple[str, str]]:
    """The ``(filename, wnid)`` rows of a Ravi & Larochelle split file (header ``filename,label``).

    ``path=None`` reads the copy shipped in ``l2l_multi/vision/splits/mini-imagenet/``.

    Example:
        >>> rows = read_split_csv(None, "val")
        >>> len(rows), rows[0]
        (9600, ('n0185567200000003.jpg', 'n01855672'))
    """
    mode = check_mode(mode, _MODES)
    if path is None:
        package = resources.files("l2l_multi.vision").joinpath("splits", "mini-imagenet")
        text = package.joinpath(f"{_CSV_NAMES[mode]}.csv").read_text(encoding="utf-8")
    else:
        with open(path, encoding="utf-8", newline="") as file:
            text = file.read()
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [cell.strip() for cell in rows[0]] != ["filename", "label"]:
        raise ValueError(
            f"{path or 'the packaged split'}: expected the header 'filename,label', got {rows[:1]}"
        )
    return [(row[0], row[1]) for row in rows[1:] if row]


def _decode_jpeg(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.size != (SIZE, SIZE):
            # LANCZOS, as Ravi & Larochelle's resizing script did.
            image = image.resize((SIZE, SIZE), Image.Resampling.LANCZOS)
        return np.asarray(image, dtype=np.uint8)


def _channels_first(images: np.ndarray) -> np.ndarray:
    """uint8 ``[..., H, W, C]`` -> float32 ``[..., C, H, W]`` (values unchanged)."""
    return np.ascontiguousarray(np.moveaxis(images, -1, -3), dtype=np.float32)


class MiniImagenet(ImageArrayDataset):
    """One split of mini-ImageNet: 100 ImageNet classes x 600 images of 84x84 RGB (64/16/20 classes).

    Two on-disk formats are read (the first found wins):

    - the pickles most code uses, ``root/mini-imagenet-cache-{train,validation,test}.pkl``: a dict
      with ``"image_data"`` uint8 ``[N, 84, 84, 3]`` and ``"class_dict"`` ``{wnid: [row, ...]}``;
    - ImageNet JPEGs ``root/images/<filename>.jpg`` listed by the Ravi & Larochelle split file
      ``root/{train,val,test}.csv`` (or, when absent, the copy shipped with l2l_multi). Images are
      resized to 84x84 (LANCZOS) if needed, decoded once and cached as ``.npy`` (in ``root``, else
      ``~/.cache/l2l_multi/mini-imagenet``, or ``cache_dir``).

    Pickles are loaded with an unpickler that accepts only numpy arrays and containers.

    Labels: ``0..K-1`` in sorted WordNet-id order (``class_names`` holds the wnids); samples keep
    the file's order (pickle rows / CSV rows).

    Samples (``data[i]`` and the task pipeline's batches) are float32 ``[3, 84, 84]`` images with
    values 0-255, as learn2learn's ``MiniImagenet`` gives them (its scripts feed them straight to a
    model); ``transform`` receives that array. ``inputs`` keeps the compact uint8 ``[N, 84, 84, 3]``
    storage (``get_tasksets("mini-imagenet")`` standardises from it).

    Args:
        root: the folder holding either format.
        mode: "train", "validation" (alias "val") or "test".
        transform: optional callable applied to each input by ``__getitem__``.
        target_transform: optional callable applied to each target by ``__getitem__``.
        download: nothing is downloaded (the images are under ImageNet's terms): with the files in
            ``root`` it is ignored (learn2learn's scripts pass True), without them True raises.
        cache_dir: where the decoded JPEG array is cached (JPEG format only).

    Attributes:
        inputs (alias ``data``): uint8 ``[N, 84, 84, 3]``; targets: int64 ``[N]``;
        class_names: the wnids.

    Example:
        >>> import os, pickle, tempfile, numpy as np
        >>> root = tempfile.mkdtemp()
        >>> cache = {"image_data": np.zeros((4, 84, 84, 3), np.uint8),
        ...          "class_dict": {"n02": [0, 1], "n01": [2, 3]}}
        >>> with open(os.path.join(root, "mini-imagenet-cache-test.pkl"), "wb") as file:
        ...     pickle.dump(cache, file)
        >>> data = MiniImagenet(root, mode="test")
        >>> data.inputs.shape, data.targets.tolist(), data.class_names
        ((4, 84, 84, 3), [1, 1, 0, 0], ['n01', 'n02'])
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
        pickle_path = os.path.join(self.root, f"mini-imagenet-cache-{self.mode}.pkl")
        images_folder = os.path.join(self.root, "images")
        if os.path.isfile(pickle_path):
            images, wnids = self._from_pickle(pickle_path)
        elif os.path.isdir(images_folder):
            images, wnids = self._from_jpegs(images_folder, cache_dir)
        elif download:
            raise ValueError(
                "download=True is not supported for mini-ImageNet (ImageNet's terms forbid "
                f"redistribution); put mini-imagenet-cache-{self.mode}.pkl or images/ + CSV in {self.root}"
            )
        else:
            raise FileNotFoundError(
                f"mini-ImageNet {self.mode} split not found: expected {pickle_path} or the folder "
                f"{images_folder} with the JPEGs"
            )
        class_names = sorted(set(wnids))
        position = {wnid: label for label, wnid in enumerate(class_names)}
        targets = np.array([position[wnid] for wnid in wnids], dtype=np.int64)
        super().__init__(images, targets, class_names, transform, target_transform)

    def get_batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float32 ``[m, 3, 84, 84]`` images (0-255) and int64 ``[m]`` labels for ``indices``."""
        return _channels_first(self.inputs[indices]), self.targets[indices]

    def __getitem__(self, index: int) -> tuple:
        image, target = _channels_first(self.inputs[index]), self.targets[index]
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    @staticmethod
    def _from_pickle(path: str) -> tuple[np.ndarray, list[str]]:
        stored = load_pickle(path)
        if not isinstance(stored, dict) or "image_data" not in stored or "class_dict" not in stored:
            raise ValueError(f"{path}: expected a dict with 'image_data' and 'class_dict'")
        images = np.asarray(stored["image_data"], dtype=np.uint8)
        wnids: list[str | None] = [None] * len(images)
        for wnid, rows in stored["class_dict"].items():
            for row in rows:
                wnids[int(row)] = str(wnid)
        if None in wnids:
            raise ValueError(f"{path}: class_dict gives no class to image row {wnids.index(None)}")
        return images, wnids  # type: ignore[return-value]

    def _from_jpegs(self, folder: str, cache_dir: str | os.PathLike | None) -> tuple[np.ndarray, list[str]]:
        csv_path = os.path.join(self.root, f"{_CSV_NAMES[self.mode]}.csv")
        rows = read_split_csv(csv_path if os.path.isfile(csv_path) else None, self.mode)
        paths = [os.path.join(folder, filename) for filename, _ in rows]
        missing = [path for path in paths if not os.path.isfile(path)]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} images of the {self.mode} split are missing, e.g. {missing[0]}"
            )
        # Names and sizes identify the files cheaply; a changed image (or list) gets a new cache.
        key = fingerprint(
            f"{filename} {wnid} {os.path.getsize(path)}" for (filename, wnid), path in zip(rows, paths)
        )
        filename = f"mini-imagenet-{self.mode}-{SIZE}px-{key}.npy"
        folders = cache_folders(self.root, cache_dir, "mini-imagenet")
        images = load_cached(folders, filename)
        if images is None or images.shape != (len(rows), SIZE, SIZE, 3):
            images = np.empty((len(rows), SIZE, SIZE, 3), dtype=np.uint8)
            for index, path in enumerate(
                tqdm(
                    paths, desc=f"decoding mini-ImageNet {self.mode}", unit="image", disable=len(paths) < 1000
                )
            ):
                images[index] = _decode_jpeg(path)
            save_cached(folders, filename, images)
        return images, [wnid for _, wnid in rows]
