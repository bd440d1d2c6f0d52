"""DeviceTasks (l2l_multi/data/_device_tasks.py) against the host pipeline: the same seed gives
the same tasks, bit for bit, on both backends: Omniglot-style stored uint8 images whose classes
are rotations (rotated and scaled on the device), and a plain float array dataset; with and
without the prefetch thread, across a checkpoint of the stream."""

import csv
import json
import runpy
import sys

import numpy as np
import pytest
from _helpers import FRAMEWORKS, OMNIGLOT_ROOT, REPO_ROOT

from l2l_multi.data import ArrayDataset, DeviceTasks, MetaDataset, TaskDataset, partition_task_batch
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
    return TaskDataset(
        data,
        [
            FusedNWaysKShots(data, 3, 2),
            LoadData(data),
            RemapLabels(data, shuffle=True),
            ConsecutiveLabels(data),
        ],
        seed=seed,
        backend="numpy",
    )


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


needs_omniglot = pytest.mark.skipif(
    not (OMNIGLOT_ROOT / "images_background.zip").exists(),
    reason=f"the Omniglot archives are not in {OMNIGLOT_ROOT}",
)


def _maml_omniglot(out, *options):
    """examples/vision/maml_omniglot.py --quick in this process; returns (metrics rows without the
    times, results.json)."""
    script = REPO_ROOT / "examples" / "vision" / "maml_omniglot.py"
    saved = sys.argv
    sys.argv = [
        str(script),
        "--quick",
        "--root",
        str(OMNIGLOT_ROOT),
        "--no-progress",
        "--out",
        str(out),
        *options,
    ]
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = saved
    with open(out / "metrics.csv", newline="") as stream:
        rows = [{k: v for k, v in row.items() if k != "elapsed_s"} for row in csv.DictReader(stream)]
    return rows, json.loads((out / "results.json").read_text())


@needs_omniglot
@pytest.mark.usefixtures("use_jax_cache")  # the quick run's compiled steps, shared with test_examples_vision
# jax under `pytest -m long` (17 s): its on-device gather is checked against the host path in this file's
# other jax tests; the end-to-end run here stays on torch by default
@pytest.mark.parametrize(
    "backend", [FRAMEWORKS[0], pytest.param("jax", marks=[*FRAMEWORKS[1].marks, pytest.mark.long])]
)
def test_driver_trains_the_same_with_tasks_on_device(tmp_path, backend, capsys):
    """The few-shot driver on the real Omniglot, --quick (4 meta-updates, evaluations at 2 and 4),
    with host tasks and with device tasks; on torch the device run stops after 2 updates and
    resumes from its checkpoint (the device stream's position; the resume logic is the same on
    jax). The same tasks reach the same compiled step (jax: the same cached executable), so the
    metrics and the test results are equal, not merely close."""
    pytest.importorskip("matplotlib")
    host_rows, host = _maml_omniglot(tmp_path / "host", "--backend", backend, "--no-tasks-on-device")
    device_options = ("--backend", backend, "--tasks-on-device")
    if backend == "torch":
        _maml_omniglot(tmp_path / "device", *device_options, "--iterations", "2")
        device_options = ("--resume", "--iterations", "4")  # tasks on the device: from config.json
    device_rows, device = _maml_omniglot(tmp_path / "device", *device_options)
    capsys.readouterr()
    assert [row["iteration"] for row in host_rows] == ["2", "4"]
    assert device_rows == host_rows
    assert device["test"] == host["test"]
    assert (host["tasks_on_device"], device["tasks_on_device"]) == (False, True)


@pytest.mark.parametrize("backend", FRAMEWORKS)
@pytest.mark.parametrize("prefetch", [0, 2])
def test_sample_split_equals_partitioned_host_tasks(backend, prefetch):
    host = _tasks(_rotated_view())
    device = DeviceTasks(_tasks(_rotated_view()), backend, prefetch=prefetch)
    for _ in range(2):
        expected = partition_task_batch(*host.sample_batch(3), shots=1)
        got = device.sample_split(3, 1)
        for part, (x, y) in zip(got, expected):
            np.testing.assert_array_equal(_host(part[0]), x)
            np.testing.assert_array_equal(_host(part[1]), y)
    assert device.state_dict() == host.state_dict()
    if prefetch:
        with pytest.raises(ValueError, match=r"\(n, shots\) = \(3, 1\), got \(3, 2\)"):
            device.sample_split(3, 2)
    device.close()


@pytest.mark.parametrize("shots", [0, 1, 2, 3])
def test_support_query_order_equals_partition_task_batch(shots):
    """Random tasks of 4 classes with 3 samples each (labels shuffled, classes of any value):
    the vectorised order picks what partition_task_batch's per-task loop picks."""
    from l2l_multi.data._device_tasks import support_query_order

    rng = np.random.default_rng(shots)
    labels = np.stack([rng.permutation(np.repeat(rng.choice(50, 4, replace=False), 3)) for _ in range(20)])
    positions = np.broadcast_to(np.arange(12), labels.shape)
    (support, _), (query, _) = partition_task_batch(positions, labels, shots=shots)
    order, cut = support_query_order(labels, shots)
    assert cut == 4 * shots
    np.testing.assert_array_equal(order, np.concatenate([support, query], axis=1))
    with pytest.raises(ValueError, match="shots=4 but a class"):
        support_query_order(labels, 4)
    with pytest.raises(ValueError, match="different support/query sizes"):
        support_query_order(np.array([[0, 0, 1, 1], [0, 1, 2, 3]]), 1)


def test_a_dropped_prefetching_stream_is_freed_and_its_thread_ends():
    """As when a training loop raises before close(): nothing else holds the object."""
    import gc
    import time
    import weakref

    device = DeviceTasks(_tasks(_arrays()), "torch", prefetch=2)
    device.sample_batch(4)
    thread, alive = device._thread, weakref.ref(device)
    del device
    deadline = time.monotonic() + 5  # the thread holds it while it prepares a batch
    while alive() is not None and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
    assert alive() is None
    thread.join(timeout=5)
    assert not thread.is_alive()
