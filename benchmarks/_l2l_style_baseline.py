"""A small reimplementation of how learn2learn 0.2.0 builds tasks, as a speed baseline.

Written from a description of learn2learn's design, not from its code. What matters for speed is
kept: one ``DataDescription`` object per sample, each carrying a list of per-sample closures;
classes and shots drawn with the ``random`` module over dicts and lists; samples loaded one at a
time with ``dataset[i]``; and a collate that runs every closure and stacks the results.
"""

from __future__ import annotations

import random
from collections import defaultdict

import numpy as np


class DataDescription:
    """One sample of a task: its dataset index and the transforms still to apply to it."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.transforms = []


class MetaDataset:
    """The dataset plus the label dictionaries learn2learn keeps (built once, not timed)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset
        self.labels_to_indices = defaultdict(list)
        self.indices_to_labels = {}
        for index, label in enumerate(dataset.targets.tolist()):
            self.labels_to_indices[label].append(index)
            self.indices_to_labels[index] = label
        self.labels = list(self.labels_to_indices)

    def __len__(self) -> int:
        return len(self.indices_to_labels)

    def __getitem__(self, index: int):
        return self.dataset[index]


class NWays:
    def __init__(self, dataset: MetaDataset, n: int) -> None:
        self.dataset, self.n = dataset, n

    def __call__(self, task):
        if task is None:
            classes = random.sample(self.dataset.labels, k=self.n)
            return [
                DataDescription(index)
                for label in classes
                for index in self.dataset.labels_to_indices[label]
            ]
        labels = list(dict.fromkeys(self.dataset.indices_to_labels[dd.index] for dd in task))
        keep = set(random.sample(labels, k=self.n))
        return [dd for dd in task if self.dataset.indices_to_labels[dd.index] in keep]


class KShots:
    def __init__(self, dataset: MetaDataset, k: int) -> None:
        self.dataset, self.k = dataset, k

    def __call__(self, task):
        if task is None:
            task = [DataDescription(index) for index in range(len(self.dataset))]
        by_label = defaultdict(list)
        for dd in task:
            by_label[self.dataset.indices_to_labels[dd.index]].append(dd)
        return [dd for group in by_label.values() for dd in random.sample(group, k=self.k)]


class LoadData:
    def __init__(self, dataset: MetaDataset) -> None:
        self.dataset = dataset

    def __call__(self, task):
        for dd in task:
            # a fresh closure per sample is the cost being reproduced
            dd.transforms.append(lambda index: self.dataset[index])
        return task


class RemapLabels:
    def __init__(self, dataset: MetaDataset, shuffle: bool = True) -> None:
        self.dataset, self.shuffle = dataset, shuffle

    def __call__(self, task):
        labels = list(dict.fromkeys(self.dataset.indices_to_labels[dd.index] for dd in task))
        new_labels = list(range(len(labels)))
        if self.shuffle:
            random.shuffle(new_labels)
        mapping = dict(zip(labels, new_labels, strict=True))
        for dd in task:
            dd.transforms.append(lambda sample: (sample[0], mapping[sample[1]]))
        return task


class ConsecutiveLabels:
    def __init__(self, dataset: MetaDataset) -> None:
        self.dataset = dataset

    def __call__(self, task):
        # learn2learn orders by the dataset's labels, not the remapped ones
        return sorted(task, key=lambda dd: self.dataset.indices_to_labels[dd.index])


def numpy_collate(samples):
    inputs, targets = zip(*samples, strict=True)
    return np.stack(inputs), np.asarray(targets, dtype=np.int64)


class TaskDataset:
    """Each ``sample()`` runs the transforms from ``None``, then every sample's closures."""

    def __init__(self, dataset: MetaDataset, task_transforms, task_collate=numpy_collate,
                 seed: int | None = None) -> None:
        self.dataset = dataset
        self.task_transforms = list(task_transforms)
        self.task_collate = task_collate
        if seed is not None:
            random.seed(seed)

    def sample(self):
        task = None
        for transform in self.task_transforms:
            task = transform(task)
        loaded = []
        for dd in task:
            data = dd.index
            for transform in dd.transforms:
                data = transform(data)
            loaded.append(data)
        return self.task_collate(loaded)
