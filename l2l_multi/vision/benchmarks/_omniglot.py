"""The Omniglot benchmark: Vinyals et al.'s split, every class a (character, rotation) pair."""

from __future__ import annotations

import numpy as np

from ._splits import SPLITS, omniglot_vinyals
from ._views import ConvertedView


def _rotating_converter(quarter_turns: np.ndarray):
    """``convert(uint8 [n, 28, 28], indices) -> float32 [n, 1, 28, 28]`` in [0, 1], each sample
    rotated by its own class's quarter turns (counter-clockwise, like PIL's ``rotate``)."""

    def convert(images: np.ndarray, indices: np.ndarray) -> np.ndarray:
        turns = quarter_turns[indices]
        out = np.empty((len(images), 1) + images.shape[1:], np.float32)
        for k in range(4):
            chosen = turns == k
            if chosen.any():
                out[chosen, 0] = np.rot90(images[chosen], k, axes=(1, 2)) / np.float32(255)
        return out

    convert.quarter_turns, convert.scale = quarter_turns, 255.0  # for DeviceTasks (on a device)
    return convert


def omniglot_splits(root, cache_dir=None, image_size: int = 28, download: bool = False) -> dict:
    """``{split: ConvertedView}`` for train / validation / test (4112 / 688 / 1692 classes).

    Each class of a split is one character at one rotation (0, 90, 180 or 270 degrees) and holds
    that character's 20 drawings rotated by that class's own angle. ``download``: fetch missing
    archives into ``root`` (see ``FullOmniglot``).
    """
    from ..datasets import FullOmniglot

    base = FullOmniglot(root, image_size=image_size, cache_dir=cache_dir, download=download)
    by_name = {name: index for index, name in enumerate(base.class_names)}
    order = np.argsort(base.targets, kind="stable")
    starts = np.searchsorted(base.targets[order], np.arange(len(base.class_names) + 1))
    views = {}
    for split in SPLITS:
        rows, targets, turns, names = [], [], [], []
        for label, (character, degrees) in enumerate(omniglot_vinyals(split)):
            if character not in by_name:
                raise ValueError(
                    f"the Vinyals split lists {character!r}, which is not in the Omniglot archives"
                )
            c = by_name[character]
            members = order[starts[c] : starts[c + 1]]
            rows.append(members)
            targets.append(np.full(len(members), label))
            turns.append(np.full(len(members), degrees // 90))
            names.append(f"{character}/rot{degrees:03d}")
        turns = np.concatenate(turns)
        views[split] = ConvertedView(
            base.inputs, np.concatenate(rows), np.concatenate(targets), _rotating_converter(turns), names
        )
    return views
