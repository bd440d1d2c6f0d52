"""DeviceTasks (l2l_multi/data/_device_tasks.py) against the host pipeline: the same seed gives
the same tasks, bit for bit, on both backends: Omniglot-style stored uint8 images whose classes
are rotations (rotated and scaled on the device), and a plain float array dataset; with and
without the prefetch thread, across a checkpoint of the stream."""

import numpy as np
import pytest
from _helpers import FRAMEWORKS

from l2l_multi.data import ArrayDataset, MetaDataset, TaskDataset
from l2l_multi.data._device_tasks import DeviceTasks
from l2l_multi.data.transforms import ConsecutiveLabels, FusedNWaysKShots, LoadData, RemapLabels
from l2l_multi.vision.benchmarks._omniglot import _rotating_converter
from l2l_multi.vision.benchmarks._views import ConvertedView


def _rotated_view():
    """12 classes of 3 drawings: 6 base characters (9x9 uint8), each at 2 of the 4 rotations."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (18, 9, 9), dtype=np.uint8)
    rows = np.concatenate([np.arange(18), np.arange(18)])
    turns = np.concatenate([np.repeat(np.arange(6) % 4, 3), np.repeat((np.arange(6) + 1) % 4, 3)])
    targets = np.repeat(np.arange(12), 3)
    return ConvertedView(images, rows, targets, _rotating_converter(turns))


def _arrays():
    rng = np.random.default_rng(1)
    return ArrayDataset(rng.standard_normal((40, 5)).astype(np.float32), np.repeat(np.arange(10), 4))


def _tasks(source, seed=7):
    data = MetaDataset(source)
    return TaskDataset(data, [FusedNWaysKShots(data, 3, 2), LoadData(data), RemapLabels(data, shuffle=True),
                              ConsecutiveLabels(data)], seed=seed, backend="numpy")


def _host(array):
    return np.asarray(array.cpu() if hasattr(array, "cpu") else array)


@pytest.mark.parametrize("backend", FRAMEWORKS)
@pytest.mark.parametrize("source", [_rotated_view, _arrays], ids=["rotated-uint8", "float-arrays"])
@pytest.mark.parametrize("prefetch", [0, 2])
def test_device_tasks_equal_host_tasks(backend, source, prefetch):
    host = _tasks(source())
    device = DeviceTasks(_tasks(source()), backend, prefetch=prefetch)
    expected = [host.sample_batch(4) for _ in range(3)]
    got = [device.sample_batch(4) for _ in range(2)]
    state = device.state_dict()  # after 2 batches, whatever the thread prepared
    got.append(device.sample_batch(4))
    resumed = DeviceTasks(_tasks(source()), backend)
    resumed.load_state_dict(state)
    device.close()
    again = resumed.sample_batch(4)
    assert expected[0][0].dtype == np.float32 and _host(got[0][0]).dtype == np.float32
    for (x, y), (dx, dy) in zip(expected + [expected[2]], got + [again]):
        np.testing.assert_array_equal(_host(dx), x)
        np.testing.assert_array_equal(_host(dy), y)
    assert not np.array_equal(expected[0][0], expected[1][0])  # the stream moves


def test_refuses_a_pipeline_off_the_fast_path():
    data = MetaDataset(_arrays())
    with pytest.raises(ValueError, match="fast path"):
        DeviceTasks(TaskDataset(data, [lambda task: task], backend="numpy"), "torch")
    with pytest.raises(ValueError, match="backend='numpy'"):
        DeviceTasks(_tasks(_arrays()), "numpy")
