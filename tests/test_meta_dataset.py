"""MetaDataset bookkeeping, its cache, and the union / filtered variants."""

import numpy as np
import pytest
from _helpers import HAVE_TORCH

from l2l_multi.data import ArrayDataset, FilteredMetaDataset, MetaDataset, UnionMetaDataset


class CountingDataset:
    """A dataset that counts sample loads, optionally exposing its labels as ``targets``."""

    def __init__(self, labels, with_targets=True):
        self._labels = list(labels)
        if with_targets:
            self.targets = list(labels)
        self.loads = 0

    def __len__(self):
        return len(self._labels)

    def __getitem__(self, i):
        self.loads += 1
        return np.full(2, i, np.float32), self._labels[i]


def reference_bookkeeping(labels):
    table = {}
    for index, label in enumerate(labels):
        table.setdefault(label, []).append(index)
    return table


def test_bookkeeping_matches_a_plain_dict_and_uses_targets_without_loading(kernel_mode):
    labels = np.random.default_rng(0).integers(0, 12, size=300).tolist()
    raw = CountingDataset(labels)
    data = MetaDataset(raw)
    assert raw.loads == 0
    assert data.labels == sorted(set(labels))
    assert data.labels_to_indices == reference_bookkeeping(labels)
    assert data.indices_to_labels == dict(enumerate(labels))
    np.testing.assert_array_equal(np.asarray(data.labels)[data.label_ids], labels)


def test_bookkeeping_without_targets_loads_each_sample_once():
    raw = CountingDataset(["b", "a", "b", "c"], with_targets=False)
    data = MetaDataset(raw)
    assert raw.loads == 4
    assert data.labels == ["a", "b", "c"]
    assert data.labels_to_indices == {"a": [1], "b": [0, 2], "c": [3]}


def test_list_of_pairs_and_incomparable_labels_keep_first_appearance_order():
    pairs = [(0.0, "x"), (1.0, 3), (2.0, "x"), (3.0, (1, 2))]
    data = MetaDataset(pairs)
    assert data.labels == ["x", 3, (1, 2)]
    assert data.labels_to_indices["x"] == [0, 2]


@pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")
def test_torch_dataset_with_tensor_labels():
    import torch

    inputs = torch.randn(10, 3)
    targets = torch.arange(10) % 3
    data = MetaDataset(torch.utils.data.TensorDataset(inputs, targets))
    assert data.labels == [0, 1, 2]
    assert data.labels_to_indices[1] == [1, 4, 7]


def test_explicit_tables_are_used_and_checked():
    raw = CountingDataset([0, 1, 0, 1], with_targets=False)
    data = MetaDataset(raw, labels_to_indices={"even": [0, 2], "odd": [1, 3]})
    assert raw.loads == 0 and data.indices_to_labels[3] == "odd"
    data = MetaDataset(raw, indices_to_labels={0: 5, 1: 6, 2: 5, 3: 6})
    assert data.labels_to_indices == {5: [0, 2], 6: [1, 3]}
    with pytest.raises(ValueError, match="no label to index 3"):
        MetaDataset(raw, labels_to_indices={"a": [0, 1, 2]})
    with pytest.raises(ValueError, match="index twice"):
        MetaDataset(raw, labels_to_indices={"a": [0, 1], "b": [1, 2, 3]})
    with pytest.raises(ValueError, match=r"outside \[0, 4\)"):
        MetaDataset(raw, labels_to_indices={"a": [0, 1, 2, 3, 9]})
    with pytest.raises(ValueError, match="no label for 1 of 4 indices"):
        MetaDataset(raw, indices_to_labels={0: 1, 1: 1, 2: 1})


def test_bad_datasets_raise_clear_errors():
    with pytest.raises(ValueError, match="dataset is empty"):
        MetaDataset([])
    with pytest.raises(ValueError, match="labels must be hashable; the label of sample 1 is a list"):
        MetaDataset([(0, 1), (1, [1, 2])])


def test_bookkeeping_cache_round_trip(tmp_path):
    path = tmp_path / "cache" / "bookkeeping.npz"
    labels = ["cat", "dog", "cat", "emu"]
    first = MetaDataset(CountingDataset(labels, with_targets=False), bookkeeping_path=path)
    assert path.exists()
    raw = CountingDataset(labels, with_targets=False)
    second = MetaDataset(raw, bookkeeping_path=path)
    assert raw.loads == 0  # read from the cache
    assert second.labels_to_indices == first.labels_to_indices
    # a cache for another dataset size is rebuilt, not trusted
    other = CountingDataset(labels + ["yak"], with_targets=False)
    assert MetaDataset(other, bookkeeping_path=path).labels[-1] == "yak" and other.loads == 5
    assert not [p for p in path.parent.iterdir() if p.name != path.name]  # no temp leftovers


def test_cache_refuses_labels_json_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="bookkeeping_path=.*JSON"):
        MetaDataset([(0, (1, 2)), (1, (3, 4))], bookkeeping_path=tmp_path / "b.npz")
    assert not list(tmp_path.iterdir())


def test_union_renumbers_labels():
    a = ArrayDataset(np.arange(4.0), np.array([7, 7, 9, 9]))
    b = ArrayDataset(np.arange(10.0, 13.0), np.array([7, 8, 8]))
    union = UnionMetaDataset([a, MetaDataset(b)])
    assert len(union) == 7
    assert union.labels == [0, 1, 2, 3]
    assert union.label_origins == [(0, 7), (0, 9), (1, 7), (1, 8)]
    assert [union[i][1] for i in range(7)] == [0, 0, 1, 1, 2, 3, 3]
    assert union[4][0] == 10.0
    assert union.labels_to_indices[3] == [5, 6]
    with pytest.raises(IndexError):
        union[7]
    with pytest.raises(ValueError, match="datasets is empty"):
        UnionMetaDataset([])


def test_filtered_keeps_only_the_requested_labels():
    base = ArrayDataset(np.arange(9.0), np.array([0, 1, 2] * 3))
    filtered = FilteredMetaDataset(base, [2, 0])
    assert filtered.labels == [0, 2]
    assert [filtered[i][1] for i in range(len(filtered))] == [0, 2, 0, 2, 0, 2]
    assert filtered.labels_to_indices == {0: [0, 2, 4], 2: [1, 3, 5]}
    inputs, targets = filtered.get_batch(np.array([1, 5]))
    assert inputs.tolist() == [2.0, 8.0] and targets.tolist() == [2, 2]
    with pytest.raises(ValueError, match="labels contains 5, which is not a label"):
        FilteredMetaDataset(base, [5])


def test_union_get_batch_matches_item_access_in_the_order_asked():
    a = ArrayDataset(np.arange(8.0).reshape(4, 2), np.array([7, 7, 9, 9]))
    b = ArrayDataset(np.arange(10.0, 16.0).reshape(3, 2), np.array([7, 8, 8]))
    union = UnionMetaDataset([a, MetaDataset(b)])
    assert union.supports_batches
    indices = np.array([6, 0, 4, 3, -1, 5, 1])
    inputs, targets = union.get_batch(indices)
    np.testing.assert_array_equal(inputs, np.stack([union[int(i)][0] for i in indices]))
    assert targets.tolist() == [union[int(i)][1] for i in indices]
    with pytest.raises(IndexError, match=r"indices must lie in \[-7, 7\)"):
        union.get_batch(np.array([7]))
    listed = UnionMetaDataset([a, [(np.zeros(2), 0)]])  # a plain list has no batched access
    assert not listed.supports_batches
    with pytest.raises(TypeError, match="every part of the union"):
        listed.get_batch(np.array([0]))


class RowsDataset:
    """torchvision style: ``data`` / ``targets`` arrays, ``transform`` applied by ``__getitem__``."""

    def __init__(self, data, targets, transform=None, scale=1):
        self.data, self.targets, self.transform, self.scale = data, targets, transform, scale

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        x = self.data[i] * self.scale if self.scale != 1 else self.data[i]
        return (x if self.transform is None else self.transform(x)), int(self.targets[i])


def array_backed(kind):
    """``(dataset, list of its (x, y) samples)`` of 12 classes x 5 samples, for ``kind``."""
    rng = np.random.default_rng(3)
    inputs = rng.standard_normal((60, 2, 3)).astype(np.float32)
    labels = rng.permutation(np.repeat(np.arange(12), 5))
    if kind == "array":
        dataset = ArrayDataset(inputs, labels)
    elif kind.startswith("torch"):
        torch = pytest.importorskip("torch")
        inputs, labels = torch.from_numpy(inputs), torch.from_numpy(labels)
        if kind == "torch-tensors":
            dataset = torch.utils.data.TensorDataset(inputs, labels)
        else:
            dataset = RowsDataset(inputs, labels)
    else:
        dataset = RowsDataset(inputs, labels)
    return dataset, [dataset[i] for i in range(len(dataset))]


def standard_tasks(dataset, seed=4, backend="numpy"):
    from l2l_multi.data import TaskDataset
    from l2l_multi.data.transforms import ConsecutiveLabels, FusedNWaysKShots, LoadData, RemapLabels

    chain = [
        FusedNWaysKShots(dataset, 4, 2),
        LoadData(dataset),
        RemapLabels(dataset),
        ConsecutiveLabels(dataset),
    ]
    return TaskDataset(dataset, chain, seed=seed, backend=backend)


@pytest.mark.parametrize("kind", ["array", "torch-tensors", "numpy-data-targets", "torch-data-targets"])
def test_array_backed_datasets_take_the_fast_path_with_the_same_tasks(kind):
    dataset, pairs = array_backed(kind)
    fast = standard_tasks(dataset)
    reference = standard_tasks(pairs)  # a list of pairs: no batched access, every transform runs
    assert fast.dataset.supports_batches and fast._plan is not None
    assert not reference.dataset.supports_batches and reference._plan is None
    assert fast.dataset.labels == reference.dataset.labels
    for _ in range(6):
        (x, y), (x_ref, y_ref) = fast.sample(), reference.sample()
        assert x.dtype == x_ref.dtype == np.float32 and y.dtype == y_ref.dtype == np.int64
        np.testing.assert_array_equal(x, x_ref)
        np.testing.assert_array_equal(y, y_ref)
    batch_x, batch_y = fast.sample_batch(3)
    for i in range(3):
        x_ref, y_ref = reference.sample()
        np.testing.assert_array_equal(batch_x[i], x_ref)
        np.testing.assert_array_equal(batch_y[i], y_ref)


@pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")
def test_tensor_dataset_gives_torch_tasks():
    import torch

    dataset, pairs = array_backed("torch-tensors")
    fast, reference = standard_tasks(dataset, backend="torch"), standard_tasks(pairs, backend="torch")
    x, y = fast[5]
    assert isinstance(x, torch.Tensor) and torch.equal(x, reference[5][0]) and torch.equal(y, reference[5][1])
    task = fast.build(2)  # before collation the gather keeps the dataset's own type
    assert isinstance(task.inputs, torch.Tensor)


def test_rows_that_are_not_plain_array_rows_take_the_general_path():
    dataset, _ = array_backed("numpy-data-targets")
    scaled = RowsDataset(dataset.data, dataset.targets, scale=2)  # __getitem__ is not data[i]
    transformed = RowsDataset(dataset.data, dataset.targets, transform=np.negative)
    refusing = RowsDataset(dataset.data, dataset.targets)
    refusing.supports_batches = False
    indices = standard_tasks(ArrayDataset(dataset.data, dataset.targets)).build(0).indices
    for data in (scaled, transformed, refusing):
        assert not MetaDataset(data).supports_batches
        x, _ = standard_tasks(data)[0]  # same labels and seed: the same samples, through __getitem__
        np.testing.assert_array_equal(x, np.stack([data[i][0] for i in indices]))


def test_a_transform_set_later_is_applied():
    dataset, pairs = array_backed("numpy-data-targets")
    tasks = standard_tasks(dataset)
    plain = tasks[1][0]
    dataset.transform = np.negative  # torchvision users set transforms on the dataset object
    assert not tasks.dataset.supports_batches
    np.testing.assert_array_equal(tasks[1][0], -plain)
    dataset.transform = None
    np.testing.assert_array_equal(tasks[1][0], plain)
