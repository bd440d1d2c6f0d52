"""partition_task, InfiniteIterator and OnDeviceDataset on every array type."""

import numpy as np
import pytest
from _helpers import FRAMEWORKS

import l2l_multi as l2l
from l2l_multi.data import (
    ArrayDataset,
    InfiniteIterator,
    MetaDataset,
    OnDeviceDataset,
    TaskDataset,
    partition_task,
)
from l2l_multi.data.transforms import KShots, LoadData, NWays


def as_framework(array, framework):
    return l2l.load_backend(framework).asarray(array) if framework != "numpy" else array


@pytest.mark.parametrize("framework", [pytest.param("numpy"), *FRAMEWORKS])
def test_partition_task(framework):
    data = as_framework(np.arange(12.0).reshape(6, 2), framework)
    labels = as_framework(np.array([4, 4, 4, 9, 9, 9]), framework)
    (support, support_labels), (query, query_labels) = partition_task(data, labels, shots=2)
    assert type(support) is type(data)
    np.testing.assert_array_equal(np.asarray(support)[:, 0], [0.0, 2.0, 6.0, 8.0])
    np.testing.assert_array_equal(np.asarray(query_labels), [4, 9])
    np.testing.assert_array_equal(np.asarray(support_labels), [4, 4, 9, 9])
    np.testing.assert_array_equal(np.asarray(query)[:, 0], [4.0, 10.0])


def test_partition_task_errors():
    with pytest.raises(ValueError, match="shots=3 but label 1 has only 2 samples"):
        partition_task(np.zeros(5), np.array([0, 0, 0, 1, 1]), 3)
    with pytest.raises(ValueError, match="labels must have shape"):
        partition_task(np.zeros(4), np.zeros(3), 1)
    with pytest.raises(ValueError, match="shots must be a non-negative integer"):
        partition_task(np.zeros(4), np.zeros(4), -1)


def test_infinite_iterator_restarts_and_refuses_empty():
    iterator = InfiniteIterator(range(3))
    assert [next(iterator) for _ in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    with pytest.raises(ValueError, match="iterable is empty"):
        next(InfiniteIterator([]))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_on_device_dataset_gives_the_same_tasks(framework):
    pairs = [(np.full((2, 2), i, np.float32), i % 4) for i in range(24)]
    on_device = OnDeviceDataset(pairs, transform=lambda x: x + 1, backend=framework)
    assert tuple(on_device.inputs.shape) == (24, 2, 2)
    host = MetaDataset(ArrayDataset(np.stack([x + 1 for x, _ in pairs]), np.arange(24) % 4))
    device = MetaDataset(on_device)
    make = lambda d: TaskDataset(d, [NWays(d, 3), KShots(d, 2), LoadData(d)], seed=1, backend=framework)
    host_tasks, device_tasks = make(host), make(device)
    for _ in range(3):
        (xh, yh), (xd, yd) = host_tasks.sample(), device_tasks.sample()
        np.testing.assert_array_equal(np.asarray(xh), np.asarray(xd))
        np.testing.assert_array_equal(np.asarray(yh), np.asarray(yd))
    with pytest.raises(ValueError, match="dataset is empty"):
        OnDeviceDataset([], backend=framework)
