"""Task transforms: semantics checked against the dataset's own labels, and their errors."""

import numpy as np
import pytest

from l2l_multi.data import ArrayDataset, MetaDataset, TaskBatch, TaskDataset, TaskDescription
from l2l_multi.data.transforms import (
    ConsecutiveLabels,
    FilterLabels,
    FusedNWaysKShots,
    KShots,
    LoadData,
    NWays,
    RemapLabels,
)


@pytest.fixture
def data():
    # 12 classes with 3..14 samples each, shuffled, labels are strings
    rng = np.random.default_rng(0)
    labels = np.concatenate([[f"c{c:02d}"] * (3 + c) for c in range(12)])
    order = rng.permutation(len(labels))
    return MetaDataset(ArrayDataset(np.arange(len(labels))[order] * 1.0, labels[order]))


def build(data, transforms, index=0, seed=0):
    return TaskDataset(data, transforms, seed=seed, backend="numpy").build(index)


def labels_of(data, indices):
    return [data.indices_to_labels[i] for i in indices.tolist()]


def test_nways_kshots_gives_n_classes_and_k_distinct_shots_each(data, kernel_mode):
    for index in range(20):
        task = build(data, [NWays(data, 4), KShots(data, 3)], index)
        assert isinstance(task, TaskDescription)
        labels = labels_of(data, task.indices)
        assert len(task.indices) == 12 and len(set(task.indices.tolist())) == 12
        assert len(set(labels)) == 4
        # class-major, in the order NWays drew the classes
        drawn = [data.labels[c] for c in task.classes]
        assert labels == [label for label in drawn for _ in range(3)]


def test_kshots_with_replacement_can_exceed_class_size(data, kernel_mode):
    task = build(data, [FilterLabels(data, ["c00"]), KShots(data, 10, replacement=True)])
    assert labels_of(data, task.indices) == ["c00"] * 10
    with pytest.raises(ValueError, match="k=10 is larger than the 3 samples of label 'c00'"):
        build(data, [FilterLabels(data, ["c00"]), KShots(data, 10)])


def test_nways_errors_name_the_limit(data):
    with pytest.raises(ValueError, match=r"n=13 is larger than the number of classes in the dataset \(12\)"):
        NWays(data, 13)
    with pytest.raises(ValueError, match="n must be a positive integer, got 0"):
        NWays(data, 0)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        KShots(data, -1)
    with pytest.raises(ValueError, match=r"n=3 is larger than the number of classes in the task \(2\)"):
        build(data, [FilterLabels(data, ["c01", "c02"]), NWays(data, 3)])
    with pytest.raises(TypeError, match="dataset must be a MetaDataset or a map-style dataset"):
        NWays(object(), 1)


def test_transforms_on_explicit_descriptions(data, kernel_mode):
    """NWays and KShots after a step that materialised indices (ConsecutiveLabels)."""
    keep = ["c03", "c05", "c07", "c09", "c11"]
    task = build(
        data,
        [FilterLabels(data, keep), KShots(data, 3), ConsecutiveLabels(data), NWays(data, 2), KShots(data, 2)],
    )
    labels = labels_of(data, task.indices)
    assert len(labels) == 4 and len(set(labels)) == 2 and set(labels) <= set(keep)


def test_fused_matches_constraints_and_filter(data, kernel_mode):
    fused = FusedNWaysKShots(data, n=3, k=2, filter_labels=["c04", "c05", "c06", "c07"])
    for index in range(10):
        task = build(data, [fused], index)
        labels = labels_of(data, task.indices)
        assert len(set(labels)) == 3 and set(labels) <= {"c04", "c05", "c06", "c07"}
        assert all(labels.count(label) == 2 for label in set(labels))
    with pytest.raises(ValueError, match="k=5 is larger than the 3 samples of label 'c00'"):
        FusedNWaysKShots(data, n=2, k=5)
    with pytest.raises(ValueError, match="filter_labels contains 'zz'"):
        FusedNWaysKShots(data, n=1, filter_labels=["zz"])


def test_load_remap_consecutive(data, kernel_mode):
    transforms = [NWays(data, 5), KShots(data, 2), LoadData(data), RemapLabels(data), ConsecutiveLabels(data)]
    task = build(data, transforms)
    assert isinstance(task, TaskBatch)
    assert task.targets.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    # the inputs moved with their labels: each remapped class holds one original label
    originals = labels_of(data, task.indices)
    for new in range(5):
        assert len({originals[i] for i in range(10) if task.targets[i] == new}) == 1
    np.testing.assert_array_equal(task.inputs, data.dataset.inputs[task.indices])


def test_remap_before_load_equals_remap_after(data):
    before = build(data, [NWays(data, 3), KShots(data, 2), RemapLabels(data, shuffle=False), LoadData(data)])
    after = build(data, [NWays(data, 3), KShots(data, 2), LoadData(data), RemapLabels(data, shuffle=False)])
    np.testing.assert_array_equal(before.targets, after.targets)
    np.testing.assert_array_equal(before.inputs, after.inputs)
    assert before.targets.tolist() == [0, 0, 1, 1, 2, 2]


def test_shuffled_remap_uses_every_assignment(data):
    """Unshuffled, the first sample is always relabelled 0; shuffled, it takes every label."""
    transforms = [NWays(data, 3), KShots(data, 1), LoadData(data)]
    first = {int(build(data, transforms + [RemapLabels(data)], i).targets[0]) for i in range(60)}
    assert first == {0, 1, 2}
    plain = {int(build(data, transforms + [RemapLabels(data, False)], i).targets[0]) for i in range(9)}
    assert plain == {0}


def test_plain_callables_after_load_receive_pairs(data):
    received = []

    def double(task):
        received.append(list(task))
        return [(2 * x, y) for x, y in task]

    tasks = TaskDataset(
        data,
        [
            NWays(data, 2),
            KShots(data, 1),
            LoadData(data),
            double,
            RemapLabels(data, shuffle=False),
            ConsecutiveLabels(data),
        ],
        seed=4,
        backend="numpy",
    )
    inputs, targets = tasks[0]
    assert len(received[0]) == 2 and all(len(pair) == 2 for pair in received[0])
    assert sorted(inputs.tolist()) == sorted(2 * x for x, _ in received[0])
    assert targets.tolist() == [0, 1]


def test_description_transforms_refuse_loaded_tasks(data):
    with pytest.raises(TypeError, match="NWays works on task descriptions.*before LoadData"):
        build(data, [LoadData(data), NWays(data, 2)])


def test_fused_on_a_narrowed_task_filters_then_samples(data, kernel_mode):
    """Given an explicit description, FusedNWaysKShots still honours filter_labels, n and k."""
    keep = ["c06", "c07", "c08", "c09"]
    fused = FusedNWaysKShots(data, n=2, k=3, filter_labels=keep)
    for index in range(10):
        task = build(
            data,
            [
                FilterLabels(data, ["c05", "c06", "c07", "c08"]),
                KShots(data, 5),
                ConsecutiveLabels(data),
                fused,
            ],
            index,
        )
        labels = labels_of(data, task.indices)
        assert len(labels) == 6 and len(set(labels)) == 2
        assert set(labels) <= {"c06", "c07", "c08"}
        assert len(set(task.indices.tolist())) == 6
