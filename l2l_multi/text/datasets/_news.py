"""The HuffPost News Category Dataset (Misra, 2018) as a few-shot text classification dataset."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import numpy as np

from ...vision.datasets._common import ImageArrayDataset

_MODES = {"train": "train", "validation": "validation", "val": "validation", "test": "test", "all": "all"}
_FILES = ("News_Category_Dataset_v2.json", "News_Category_Dataset_v3.json", "News_Category_Dataset.json")
# learn2learn's 41 categories split about 60/20/20, with the Meta-Dataset procedure (see split_categories).
_PUBLISHED = (25, 8, 8)
_SEED = 22


def split_categories(names: list[str]) -> dict[str, list[str]]:
    """Split category names into train/validation/test deterministically.

    The names are sorted; 41 categories (v2 of the dataset, learn2learn's) split 25/8/8, any other
    count about 60/20/20. The draw is Meta-Dataset's ``gen_rand_split_inds`` with seed 22: pick
    train+validation without replacement, the rest are test, then pick train among them.

    Returns:
        ``{"train", "validation", "test"}`` -> sorted lists of names.

    Example:
        >>> parts = split_categories([f"C{index:02d}" for index in range(41)])
        >>> [len(parts[mode]) for mode in ("train", "validation", "test")], parts["test"][:2]
        ([25, 8, 8], ['C00', 'C04'])
    """
    names = sorted(names)
    if len(names) < 3:
        raise ValueError(f"need at least 3 categories to split, got {len(names)}: {names}")
    if len(names) == sum(_PUBLISHED):
        counts = _PUBLISHED
    else:
        held_out = max(1, round(len(names) * 0.2))
        counts = (len(names) - 2 * held_out, held_out, held_out)
    rng = np.random.RandomState(_SEED)  # the legacy generator keeps the split fixed across numpy versions
    trainval = rng.choice(len(names), counts[0] + counts[1], replace=False)
    train = np.sort(rng.choice(trainval, counts[0], replace=False))
    parts = {
        "train": train,
        "validation": np.setdiff1d(trainval, train),
        "test": np.setdiff1d(np.arange(len(names)), trainval),
    }
    return {mode: [names[int(index)] for index in indices] for mode, indices in parts.items()}


class NewsClassification(ImageArrayDataset):
    """HuffPost news headlines in 41 categories (200,853 articles, 2012-2018) for few-shot classification.

    Reads the JSON-lines file ``root/News_Category_Dataset_v2.json`` (or ``_v3``; one object a line with
    ``"category"``, ``"headline"``, ``"short_description"``, ...). A sample is the headline, a space and
    the short description (the headline alone when that is empty), returned raw (no tokenizer).

    Split: by category (never by article), from ``split_categories``: names sorted, 25/8/8 for the
    41 categories of v2 (about 60/20/20 otherwise), drawn with Meta-Dataset's procedure and seed 22.
    Labels follow sorted category order within the split; ``mode="all"`` keeps every category.
    Note: learn2learn's own ``NewsClassification`` used a pre-sampled train/test CSV instead.

    ``download=True`` cannot fetch the file: its original home (kaggle.com/datasets/rmisra/
    news-category-dataset) needs a Kaggle login and publishes no checksum, so it raises with
    instructions unless the file is already in ``root``.

    Args:
        root: folder holding the JSON-lines file.
        mode: "train", "validation" (or "val"), "test" or "all"; learn2learn's boolean (True for
            "train", False for "test") is accepted too, positionally or as ``train=``.
        transform: optional ``str -> anything`` applied by ``__getitem__`` (e.g. a tokenizer).
        target_transform: optional ``int64 label -> anything``.
        download: see above.
        train: learn2learn's spelling of the split (True: "train", False: "test"); give it or
            ``mode``, not both.

    Attributes:
        inputs (alias ``data``): object array ``[N]`` of ``str``; targets: int64 ``[N]``;
        class_names: category names (index = label).

    Example:
        >>> data = NewsClassification("~/data/news", mode="test")  # doctest: +SKIP
        >>> text, label = data[0]  # doctest: +SKIP
    """

    def __init__(
        self,
        root: str | os.PathLike,
        mode: str | bool = "train",
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        download: bool = False,
        *,
        train: bool | None = None,
    ) -> None:
        if train is not None:
            if mode != "train":
                raise ValueError(f"pass mode={mode!r} or train={train!r}, not both")
            mode = bool(train)
        if isinstance(mode, bool):  # learn2learn's NewsClassification(root, train=True)
            mode = "train" if mode else "test"
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
        self.mode = _MODES[mode]
        self.root = os.path.expanduser(os.fspath(root))
        paths = [os.path.join(self.root, name) for name in _FILES]
        path = next((candidate for candidate in paths if os.path.isfile(candidate)), None)
        if path is None:
            hint = (
                "download=True cannot fetch it: download News_Category_Dataset_v2.json from "
                "https://www.kaggle.com/datasets/rmisra/news-category-dataset (login required) into root"
                if download
                else "pass download=True for instructions, or put the file in root"
            )
            raise FileNotFoundError(f"NewsClassification: {paths[0]} not found; {hint}")
        texts, categories = [], []
        with open(path, encoding="utf-8") as file:
            for number, line in enumerate(file, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    category, headline = record["category"], record["headline"]
                except (ValueError, KeyError) as error:
                    raise ValueError(
                        f"{path}:{number}: expected a JSON object with 'category' and "
                        f"'headline', got {line[:80]!r} ({error})"
                    ) from error
                description = record.get("short_description") or ""
                texts.append(f"{headline} {description}".strip() if description else headline)
                categories.append(category)
        parts = split_categories(sorted(set(categories)))
        names = sorted(sum(parts.values(), [])) if self.mode == "all" else parts[self.mode]
        label_of = {name: label for label, name in enumerate(names)}
        keep = [index for index, category in enumerate(categories) if category in label_of]
        inputs = np.empty(len(keep), dtype=object)
        inputs[:] = [texts[index] for index in keep]
        targets = np.array([label_of[categories[index]] for index in keep], dtype=np.int64)
        # the shared array dataset: transforms per sample, batches only without transforms
        super().__init__(inputs, targets, names, transform, target_transform)
