"""The standard class splits shipped with the package (``l2l_multi/vision/splits``, MIT, see
``SOURCES.md`` there): Vinyals et al.'s Omniglot, Ravi & Larochelle's mini-ImageNet,
Bertinetto et al.'s CIFAR-FS and Oreshkin et al.'s FC100."""

from __future__ import annotations

import csv
import io
import json
from importlib import resources

SPLITS = ("train", "validation", "test")
_FILE_NAMES = {"train": "train", "validation": "val", "test": "test"}


def _read(*parts: str) -> str:
    return resources.files("l2l_multi.vision").joinpath("splits", *parts).read_text(encoding="utf-8")


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not one of {SPLITS}")
    return split


def omniglot_vinyals(split: str) -> list[tuple[str, int]]:
    """``[("Alphabet/characterNN", degrees), ...]`` of the Vinyals split, in file order.

    Example:
        >>> omniglot_vinyals("train")[:2]
        [('Angelic/character01', 0), ('Angelic/character01', 90)]
        >>> len(omniglot_vinyals("train")), len(omniglot_vinyals("validation")), len(omniglot_vinyals("test"))
        (4112, 688, 1692)
    """
    text = _read("omniglot", "vinyals", f"{_FILE_NAMES[check_split(split)]}.txt")
    classes = []
    for line in text.split():
        character, _, rotation = line.rpartition("/")
        classes.append((character, int(rotation.removeprefix("rot"))))
    return classes


def mini_imagenet(split: str) -> list[tuple[str, str]]:
    """``[(filename, wnid), ...]`` of Ravi & Larochelle's CSV for ``split``.

    Example:
        >>> rows = mini_imagenet("test")
        >>> len(rows), len({wnid for _, wnid in rows})
        (12000, 20)
    """
    reader = csv.DictReader(io.StringIO(_read("mini-imagenet", f"{_FILE_NAMES[check_split(split)]}.csv")))
    return [(row["filename"], row["label"]) for row in reader]


def cifar_fs(split: str) -> list[str]:
    """CIFAR-100 fine class names of the CIFAR-FS ``split``.

    Example:
        >>> len(cifar_fs("train")), len(cifar_fs("validation")), len(cifar_fs("test"))
        (64, 16, 20)
    """
    return [pair[1] for pair in json.loads(_read("cifar-fs", f"{_FILE_NAMES[check_split(split)]}.json"))]


def fc100(split: str) -> list[str]:
    """CIFAR-100 superclass names of the FC100 ``split``.

    Example:
        >>> len(fc100("train")), len(fc100("test"))
        (12, 4)
    """
    return list(json.loads(_read("fc100", f"{_FILE_NAMES[check_split(split)]}.json")))
