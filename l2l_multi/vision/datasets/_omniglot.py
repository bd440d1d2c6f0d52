"""Omniglot (Lake et al., 2015): all 1623 characters of both original archives, read from the zips."""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from collections.abc import Callable

import numpy as np
from tqdm.auto import tqdm

from ._common import ImageArrayDataset, cache_folders, fingerprint, load_cached, save_cached
from ._download import CorruptArchiveError, download_file, verify_file, zip_content_digest, zip_members

_URL = "https://github.com/brendenlake/omniglot/raw/master/python/{}.zip"
# (archive stem, md5 of Lake's published zip, content digest of its PNGs). Lake publishes md5s
# only; the content digests (see omniglot_content_digest) come from the repackaged copy described
# in the project's data README and accept any zip holding the same PNG bytes.
_ARCHIVES = (
    (
        "images_background",
        "68d2efa1b9178cc56df9314c21c6e718",
        "deaa02f758afda524b3a045c7af40311f2d9ded3e2a39f715ece8470d474bc6a",
    ),
    (
        "images_evaluation",
        "6b91aef0f799c5bb55b94e3f2daec811",
        "3d5e035f27423c362bf9a181af649b43cda64c1008f842177ddc5203269c901e",
    ),
)
# sha256 of Lake's zips as TensorFlow Datasets records them for the same URLs; a download must match it.
_SHA256 = {
    "images_background": "ad41ab679c8b5d90b271ef46be6987cc81211774a695c29dcc5367b2b26ee640",
    "images_evaluation": "1f61a8f3366785b057fc117d9228e78a16e3d976c8953b2a10fcc74cf0609cee",
}
NATIVE_SIZE = 105


def omniglot_content_digest(zip_path: str | os.PathLike) -> str:
    """sha256 over the sorted lines ``"<sha256 of PNG bytes>  <arcname>\\n"`` of an Omniglot zip.

    It identifies the images whatever zip encoder wrote the archive (the published zips and a
    repackaged copy of the same PNGs agree).

    Returns:
        64 hex characters.

    Example:
        >>> import hashlib, os, tempfile, zipfile
        >>> path = os.path.join(tempfile.mkdtemp(), "images_background.zip")
        >>> name = "images_background/A/character01/0001_01.png"
        >>> with zipfile.ZipFile(path, "w") as archive:
        ...     archive.writestr(name, b"png bytes")
        >>> line = f"{hashlib.sha256(b'png bytes').hexdigest()}  {name}\\n"
        >>> omniglot_content_digest(path) == hashlib.sha256(line.encode()).hexdigest()
        True
    """
    return zip_content_digest(zip_path, suffix=".png")


def _list_members(archive: zipfile.ZipFile, path: str) -> dict[str, list[zipfile.ZipInfo]]:
    """``{"Alphabet/characterNN": [png members sorted by name]}`` for one archive."""
    classes: dict[str, list[zipfile.ZipInfo]] = {}
    for info in zip_members(archive, path):  # a repeated member would add an image twice
        parts = info.filename.split("/")
        if info.is_dir() or not info.filename.endswith(".png"):
            continue
        if len(parts) != 4:
            raise ValueError(
                f"{path}: member {info.filename!r} is not <top>/<alphabet>/<character>/<file>.png "
                "(the layout of Lake's images_background.zip / images_evaluation.zip)"
            )
        classes.setdefault(f"{parts[1]}/{parts[2]}", []).append(info)
    for members in classes.values():
        members.sort(key=lambda info: info.filename)
    return dict(sorted(classes.items()))


def _open_archive(path: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError) as error:
        raise CorruptArchiveError(
            f"Omniglot archive {path} is corrupt or not a zip file ({error}); delete it and pass "
            "download=True to fetch it again"
        ) from error


def _read_image(archive: zipfile.ZipFile, path: str, info: zipfile.ZipInfo, image_size: int | None):
    try:
        return _decode(archive.read(info), image_size)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:  # PIL's errors are OSErrors
        raise CorruptArchiveError(
            f"Omniglot archive {path}: member {info.filename!r} cannot be read as an image ({error}); "
            "delete the archive and pass download=True to fetch it again"
        ) from error


def _decode(data: bytes, image_size: int | None) -> np.ndarray:
    """One PNG as uint8 ``[S, S]`` with ink = 255 and paper = 0."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        # Pillow resizes 1-bit images with NEAREST whatever filter is asked: go to greyscale first.
        grey = image.convert("L")
    if image_size is not None and grey.size != (image_size, image_size):
        # LANCZOS, as the MAML and ProtoNets preprocessing did.
        grey = grey.resize((image_size, image_size), Image.Resampling.LANCZOS)
    # The scans are black ink on white; strokes = 1 (after /255) is what the models were trained on.
    return 255 - np.asarray(grey, dtype=np.uint8)


class FullOmniglot(ImageArrayDataset):
    """Both Omniglot archives as one dataset: 1623 characters x 20 drawings = 32,460 images.

    Reads ``root/images_background.zip`` and ``root/images_evaluation.zip`` (Lake's layout,
    ``<top>/<Alphabet>/characterNN/NNNN_DD.png``) without extracting them. Images are decoded once
    and cached as a ``.npy`` file named by size and a key over the zips' member names and CRCs;
    later constructions load the cache (a fraction of a second).

    Labels: the background characters first, sorted by ``(alphabet, character)`` (labels 0-963),
    then the evaluation characters likewise (964-1622). Samples are label-major; drawings within
    a character are in file-name order.

    Pixels: uint8 with paper = 0 and ink = 255 (inverted from the scans, so ``image / 255`` has
    strokes = 1 as in the MAML / ProtoNets preprocessing). ``image_size=None`` keeps the original
    105x105 binary images (values 0 or 255); ``image_size=28`` converts to greyscale and resizes with
    LANCZOS (antialiased, values in 0..255) before inverting.

    Args:
        root: folder holding the two zips.
        transform: optional ``uint8 [H, W] -> anything`` applied by ``__getitem__``.
        target_transform: optional ``int64 label -> anything`` applied by ``__getitem__``.
        download: fetch missing zips from Lake's repository (sha256-checked) and check present ones
            (their sha256 or md5, or their PNG content digest for repackaged copies).
        image_size: side of the square output images; None for 105.
        cache_dir: folder of the decoded-array cache; None tries ``root`` then
            ``~/.cache/l2l_multi/omniglot`` (``$L2L_MULTI_CACHE`` / ``$XDG_CACHE_HOME`` respected),
            so a read-only ``root`` works.

    Attributes:
        inputs (alias ``data``): uint8 ``[32460, S, S]``.
        targets: int64 ``[32460]``.
        class_names: ``"Alphabet/characterNN"`` per label, as in the Vinyals split files.
        background_classes: 964, the number of labels from ``images_background``.

    Example:
        >>> import io, os, tempfile, zipfile
        >>> from PIL import Image
        >>> root = tempfile.mkdtemp()
        >>> png = io.BytesIO(); Image.new("1", (105, 105), 1).save(png, "PNG")
        >>> for top in ("images_background", "images_evaluation"):
        ...     with zipfile.ZipFile(os.path.join(root, top + ".zip"), "w") as archive:
        ...         for drawing in ("01", "02"):
        ...             archive.writestr(f"{top}/{top[7:]}/character01/0001_{drawing}.png", png.getvalue())
        >>> data = FullOmniglot(root, image_size=28)
        >>> data.inputs.shape, data.targets.tolist(), data.class_names, int(data.inputs.max())
        ((4, 28, 28), [0, 0, 1, 1], ['background/character01', 'evaluation/character01'], 0)
    """

    def __init__(
        self,
        root: str | os.PathLike,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        download: bool = False,
        image_size: int | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
            raise ValueError(f"image_size must be None or a positive int, got {image_size!r}")
        self.root = os.path.expanduser(os.fspath(root))
        self.image_size = image_size
        paths = [os.path.join(self.root, f"{stem}.zip") for stem, _, _ in _ARCHIVES]
        for path, (stem, md5, content) in zip(paths, _ARCHIVES):
            if download:
                self._fetch(path, stem, md5, content)
            elif not os.path.isfile(path):
                raise FileNotFoundError(
                    f"Omniglot archive {path} not found; pass download=True or put {stem}.zip in root"
                )

        archives = []
        try:
            for path in paths:
                archives.append(_open_archive(path))
            listings = [_list_members(archive, path) for archive, path in zip(archives, paths)]
            class_names, members, owners = [], [], []
            for which, listing in enumerate(listings):
                for name, infos in listing.items():
                    class_names.append(name)
                    members.extend(infos)
                    owners.extend([which] * len(infos))
            targets = np.repeat(
                np.arange(len(class_names), dtype=np.int64),
                [len(infos) for listing in listings for infos in listing.values()],
            )
            side = NATIVE_SIZE if image_size is None else image_size
            key = fingerprint(f"{info.filename} {info.CRC} {info.file_size}" for info in members)
            # The native images are binary: packing 8 pixels a byte makes their cache 45 MB, not 358.
            packed = image_size is None
            filename = f"omniglot-{side}px{'-bits' if packed else ''}-{key}.npy"
            folders = cache_folders(self.root, cache_dir, "omniglot")
            cached = load_cached(folders, filename)
            count = len(members)
            if cached is not None and packed and cached.shape != ((count * side * side + 7) // 8,):
                cached = None  # a cache of other images: decode again and overwrite it
            if cached is not None and packed:
                cached = np.unpackbits(cached, count=count * side * side).reshape(count, side, side)
                np.multiply(cached, 255, out=cached)
            if cached is None or cached.shape != (count, side, side):
                cached = np.empty((count, side, side), dtype=np.uint8)
                for index, (info, which) in enumerate(
                    tqdm(
                        list(zip(members, owners)),
                        desc="decoding Omniglot",
                        unit="image",
                        disable=len(members) < 1000,
                    )
                ):
                    cached[index] = _read_image(archives[which], paths[which], info, image_size)
                save_cached(folders, filename, np.packbits(cached > 127) if packed else cached)
        finally:
            for archive in archives:
                archive.close()
        self.background_classes = len(listings[0])
        super().__init__(cached, targets, class_names, transform, target_transform)

    @staticmethod
    def _fetch(path: str, stem: str, md5: str, content: str) -> None:
        if not os.path.isfile(path):
            download_file(_URL.format(stem), path, _SHA256[stem])
        elif not verify_file(path, _SHA256[stem], md5=md5, content_digest=content, content_suffix=".png"):
            raise ValueError(
                f"{path} matches neither the sha256 nor the md5 of Lake's {stem}.zip ({md5}) nor the "
                f"content digest of its PNGs ({content}); delete it and pass download=True to fetch it again"
            )
