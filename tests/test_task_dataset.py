"""TaskDataset: the seeded task stream, its outputs per backend, and snippet 2 of MISSION.md."""

import hashlib

import numpy as np
import pytest
from _helpers import FRAMEWORKS, HAVE_JAX, HAVE_TORCH, run_python

import l2l_multi as l2l
from l2l_multi.data import ArrayDataset, MetaDataset, TaskDataset
from l2l_multi.data.transforms import (
    ConsecutiveLabels,
    FilterLabels,
    FusedNWaysKShots,
    KShots,
    LoadData,
    NWays,
    RemapLabels,
)


def omniglot_sized(classes=200, per_class=20):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, size=(classes * per_class, 4, 4), dtype=np.uint8)
    return MetaDataset(ArrayDataset(images, np.repeat(np.arange(classes), per_class)))


def pipeline(data, ways=5, shots=2):
    return [
        NWays(data, ways),
        KShots(data, shots),
        LoadData(data),
        RemapLabels(data),
        ConsecutiveLabels(data),
    ]


def stream_digest(tasks, count=25):
    """A hash of the first ``count`` tasks' dataset indices and labels."""
    digest = hashlib.sha256()
    for index in range(count):
        task = tasks.build(index)
        digest.update(task.indices.tobytes())
        digest.update(np.asarray(task.targets, dtype=np.int64).tobytes())
    return digest.hexdigest()


def test_seed_fixes_the_stream_and_different_seeds_differ(kernel_mode):
    data = omniglot_sized()
    a = TaskDataset(data, pipeline(data), seed=11, backend="numpy")
    b = TaskDataset(data, pipeline(data), seed=11, backend="numpy")
    c = TaskDataset(data, pipeline(data), seed=12, backend="numpy")
    assert stream_digest(a) == stream_digest(b) != stream_digest(c)
    for _ in range(5):
        (xa, ya), (xb, yb) = a.sample(), b.sample()
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_compiled_and_python_kernels_give_identical_tasks():
    if not l2l.data.compiled_available():
        pytest.skip("compiled kernels not built")
    data = omniglot_sized()
    digests = {}
    for mode in ("compiled", "python"):
        l2l.data.set_kernel_mode(mode)
        for name, transforms in {
            "nways-kshots": pipeline(data, 20, 5),
            "fused": [FusedNWaysKShots(data, 5, 1), LoadData(data), RemapLabels(data)],
            "replacement": [NWays(data, 3), KShots(data, 30, replacement=True), LoadData(data)],
        }.items():
            digests[mode, name] = stream_digest(TaskDataset(data, transforms, seed=5, backend="numpy"))
    for name in ("nways-kshots", "fused", "replacement"):
        assert digests["compiled", name] == digests["python", name], name


def test_stream_is_identical_in_a_fresh_process():
    """Same seed, another interpreter (other hash seed, other kernel mode): same tasks."""
    code = (
        "import numpy as np, hashlib, l2l_multi as l2l\n"
        "from l2l_multi.data import ArrayDataset, MetaDataset, TaskDataset\n"
        "from l2l_multi.data.transforms import *\n"
        "rng = np.random.default_rng(1)\n"
        "images = rng.integers(0, 255, size=(4000, 4, 4), dtype=np.uint8)\n"
        "data = MetaDataset(ArrayDataset(images, np.repeat(np.arange(200), 20)))\n"
        "t = TaskDataset(data, [NWays(data, 5), KShots(data, 2), LoadData(data), RemapLabels(data),"
        " ConsecutiveLabels(data)], seed=11, backend='numpy')\n"
        "d = hashlib.sha256()\n"
        "for i in range(25):\n"
        "    task = t.build(i); d.update(task.indices.tobytes())\n"
        "    d.update(np.asarray(task.targets, dtype=np.int64).tobytes())\n"
        "print(d.hexdigest())\n"
    )
    data = omniglot_sized()
    expected = stream_digest(TaskDataset(data, pipeline(data), seed=11, backend="numpy"))
    for env in ({"PYTHONHASHSEED": "1"}, {"PYTHONHASHSEED": "2", "L2L_PUREPYTHON": "1"}):
        result = run_python(code, env=env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == expected


@pytest.mark.skipif(not (HAVE_TORCH and HAVE_JAX), reason="needs torch and jax")
def test_torch_and_jax_get_identical_tasks():
    import jax
    import torch

    data = omniglot_sized()
    with l2l.use_backend("torch"):
        torch_tasks = TaskDataset(data, pipeline(data), seed=3)
    with l2l.use_backend("jax"):
        jax_tasks = TaskDataset(data, pipeline(data), seed=3)
    for _ in range(5):
        (xt, yt), (xj, yj) = torch_tasks.sample(), jax_tasks.sample()
        assert isinstance(xt, torch.Tensor) and isinstance(xj, jax.Array)
        assert yt.dtype == torch.int64 and xt.dtype == torch.uint8
        np.testing.assert_array_equal(xt.numpy(), np.asarray(xj))
        np.testing.assert_array_equal(yt.numpy(), np.asarray(yj))
    (bt, lt), (bj, lj) = torch_tasks.sample_batch(3), jax_tasks.sample_batch(3)
    np.testing.assert_array_equal(bt.numpy(), np.asarray(bj))
    np.testing.assert_array_equal(lt.numpy(), np.asarray(lj))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_sample_batch_stacks_the_next_tasks(framework):
    data = omniglot_sized()
    batched = TaskDataset(data, pipeline(data, 5, 3), seed=8, backend=framework)
    single = TaskDataset(data, pipeline(data, 5, 3), seed=8, backend=framework)
    inputs, targets = batched.sample_batch(4)
    assert tuple(inputs.shape) == (4, 15, 4, 4) and tuple(targets.shape) == (4, 15)
    for i in range(4):
        x, y = single.sample()
        np.testing.assert_array_equal(np.asarray(inputs[i]), np.asarray(x))
        np.testing.assert_array_equal(np.asarray(targets[i]), np.asarray(y))
    x_next, _ = single.sample()
    np.testing.assert_array_equal(np.asarray(batched.sample()[0]), np.asarray(x_next))


def test_sample_batch_rejects_ragged_tasks_and_bad_n():
    data = MetaDataset(ArrayDataset(np.arange(7.0), np.array([0, 0, 0, 0, 0, 1, 1])))
    ragged = TaskDataset(data, [NWays(data, 1), LoadData(data)], seed=0, backend="numpy")
    with pytest.raises(ValueError, match="sample_batch needs tasks of one shape"):
        ragged.sample_batch(16)
    with pytest.raises(ValueError, match="n must be a positive integer, got 0"):
        ragged.sample_batch(0)


def test_fixed_tasks_repeat_and_iterate():
    data = omniglot_sized()
    tasks = TaskDataset(data, pipeline(data), num_tasks=6, seed=2, backend="numpy")
    assert len(tasks) == 6
    listed = [x for x, _ in tasks]
    assert len(listed) == 6
    np.testing.assert_array_equal(tasks[3][0], listed[3])
    np.testing.assert_array_equal(tasks[-1][0], listed[5])
    drawn = {tasks.sample()[0].tobytes() for _ in range(60)}
    assert drawn == {x.tobytes() for x in listed}  # sample() only ever returns the 6 tasks
    with pytest.raises(IndexError, match="out of range for num_tasks=6"):
        tasks[6]


def test_endless_stream_yields_distinct_tasks():
    data = omniglot_sized()
    tasks = TaskDataset(data, pipeline(data), seed=2, backend="numpy")
    assert len(tasks) == 1  # learn2learn's length of an endless stream
    iterator = iter(tasks)
    seen = {next(iterator)[0].tobytes() for _ in range(50)}
    assert len(seen) == 50


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "10"])
def test_bad_num_tasks(bad):
    data = omniglot_sized(5, 2)
    with pytest.raises(ValueError, match="num_tasks must be -1 .* or a positive integer"):
        TaskDataset(data, num_tasks=bad)


def test_bad_arguments_name_themselves():
    data = omniglot_sized(5, 2)
    with pytest.raises(ValueError, match="seed must be an int or None"):
        TaskDataset(data, seed="abc")
    with pytest.raises(ValueError, match="backend='tensorflow' is not a known backend"):
        TaskDataset(data, backend="tensorflow")
    with pytest.raises(TypeError, match=r"task_transforms\[1\] is a int"):
        TaskDataset(data, [NWays(data, 2), 3])


def test_raw_dataset_is_wrapped_and_no_transforms_gives_the_whole_dataset():
    pairs = [(np.full(2, i, np.float32), i % 3) for i in range(9)]
    tasks = TaskDataset(pairs, seed=0, backend="numpy")
    assert isinstance(tasks.dataset, MetaDataset)
    inputs, targets = tasks.sample()
    assert inputs.shape == (9, 2) and targets.tolist() == [i % 3 for i in range(9)]


def test_task_rng_makes_custom_transforms_reproducible():
    data = omniglot_sized()

    def jitter(task):
        rng = l2l.data.task_rng()
        return [(x + rng.integers(0, 10), y) for x, y in task]

    def make():
        return TaskDataset(data, pipeline(data) + [jitter], num_tasks=5, seed=9, backend="numpy")

    np.testing.assert_array_equal(make()[2][0], make()[2][0])


# -- snippet 2 of MISSION.md, verbatim (with a torch Dataset and a per-sample rotation) --------
SNIPPET_2 = """
dataset = l2l.data.MetaDataset(MyDataset()) # PyTorch dataset
transforms = [ # easy to define custom task transforms
    l2l.data.transforms.NWays(dataset, n=5),
    l2l.data.transforms.KShots(dataset, k=1),
    l2l.data.transforms.LoadData(dataset),
    lambda task: [(random_rotation(x), y) for x, y in task]
]
taskset = l2l.data.TaskDataset(dataset,
                               transforms,
                               num_tasks=20000)
random_task = taskset.sample() # sample one task
for task in taskset: # iterate over all tasks
    X, y = task
    break
"""


@pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")
@pytest.mark.parametrize("backend", FRAMEWORKS)
def test_snippet_2_runs_verbatim(backend):
    import torch

    class MyDataset(torch.utils.data.Dataset):
        def __init__(self):
            self.images = torch.rand(40, 1, 6, 6)
            self.targets = [i % 8 for i in range(40)]

        def __len__(self):
            return 40

        def __getitem__(self, i):
            return self.images[i], self.targets[i]

    def random_rotation(x):
        return torch.rot90(x, int(l2l.data.task_rng().integers(4)), dims=(1, 2))

    l2l.set_backend(backend)
    namespace = {"l2l": l2l, "MyDataset": MyDataset, "random_rotation": random_rotation}
    exec(SNIPPET_2, namespace)
    X, y = namespace["X"], namespace["y"]
    array_type = torch.Tensor if backend == "torch" else __import__("jax").Array
    assert isinstance(X, array_type) and isinstance(y, array_type)
    assert tuple(X.shape) == (5, 1, 6, 6) and len(set(np.asarray(y).tolist())) == 5
    assert isinstance(namespace["random_task"][0], array_type)


PLAN_CASES = {
    "nways-kshots-load": lambda d: [NWays(d, 5), KShots(d, 3), LoadData(d)],
    "remap-ordered": lambda d: [NWays(d, 4), KShots(d, 2), LoadData(d), RemapLabels(d, False)],
    "remap-shuffled-consecutive": lambda d: pipeline(d, 20, 5),
    "replacement": lambda d: [NWays(d, 3), KShots(d, 25, replacement=True), LoadData(d), RemapLabels(d)],
    "fused-filtered": lambda d: [
        FusedNWaysKShots(d, 5, 2, filter_labels=range(50, 90)),
        LoadData(d),
        RemapLabels(d),
        ConsecutiveLabels(d),
    ],
}


@pytest.mark.parametrize("case", PLAN_CASES)
def test_fast_path_builds_the_same_tasks_as_the_transforms(case, kernel_mode):
    data = omniglot_sized()
    fast = TaskDataset(data, PLAN_CASES[case](data), seed=21, backend="numpy")
    general = TaskDataset(data, PLAN_CASES[case](data), seed=21, backend="numpy")
    general._plan = None  # force the transform-by-transform path
    assert fast._plan is not None
    for index in range(30):
        a, b = fast.build(index), general.build(index)
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.targets, b.targets)
        np.testing.assert_array_equal(a.inputs, b.inputs)
    inputs, targets = fast.sample_batch(7)
    for i in range(7):
        x, y = general.sample()
        np.testing.assert_array_equal(inputs[i], x)
        np.testing.assert_array_equal(targets[i], y)


def test_fast_path_is_not_used_for_other_pipelines():
    data = omniglot_sized()
    custom = TaskDataset(data, pipeline(data) + [lambda task: task], backend="numpy")
    consecutive_only = TaskDataset(
        data, [NWays(data, 2), KShots(data, 1), LoadData(data), ConsecutiveLabels(data)], backend="numpy"
    )
    assert custom._plan is None and consecutive_only._plan is None


def test_small_classes_disable_the_fast_path_but_not_sampling():
    # class 0 has 2 samples, the others 6: 3 shots work only when class 0 is not drawn
    labels = np.array([0, 0] + [c for c in range(1, 6) for _ in range(6)])
    data = MetaDataset(ArrayDataset(np.arange(len(labels), dtype=np.float32), labels))
    tasks = TaskDataset(
        data,
        [FilterLabels(data, [1, 2, 3, 4, 5]), NWays(data, 2), KShots(data, 3), LoadData(data)],
        seed=0,
        backend="numpy",
    )
    assert tasks.sample()[0].shape == (6,)
    plain = TaskDataset(data, [NWays(data, 6), KShots(data, 3), LoadData(data)], backend="numpy")
    assert plain._plan is None
    with pytest.raises(ValueError, match="k=3 is larger than the 2 samples of label 0"):
        plain.sample()


def test_transforms_built_on_a_raw_dataset_share_one_wrapper():
    raw = omniglot_sized(30, 4).dataset
    tasks = TaskDataset(
        raw, [NWays(raw, 3), KShots(raw, 2), LoadData(raw), RemapLabels(raw)], seed=5, backend="numpy"
    )
    wrapped = MetaDataset(raw)
    reference = TaskDataset(
        wrapped,
        [NWays(wrapped, 3), KShots(wrapped, 2), LoadData(wrapped), RemapLabels(wrapped)],
        seed=5,
        backend="numpy",
    )
    assert tasks.dataset is NWays(raw, 2).dataset and tasks._plan is not None
    for index in range(4):
        np.testing.assert_array_equal(tasks[index][0], reference[index][0])


def test_pickled_task_dataset_continues_the_same_stream():
    import pickle

    data = omniglot_sized(30, 4)
    tasks = TaskDataset(data, pipeline(data, 3, 2), seed=8, backend="numpy")
    tasks.sample()
    copy = pickle.loads(pickle.dumps(tasks))
    for _ in range(3):
        (x, y), (x_copy, y_copy) = tasks.sample(), copy.sample()
        np.testing.assert_array_equal(x, x_copy)
        np.testing.assert_array_equal(y, y_copy)


def test_as_iterable_splits_the_stream_between_workers(monkeypatch):
    from l2l_multi.data import _task_stream

    data = omniglot_sized(30, 4)
    tasks = TaskDataset(data, pipeline(data, 3, 2), seed=8, backend="numpy")
    tasks.sample()  # the iterable starts where the stream stands: task 1
    shares = []
    for worker in range(3):
        monkeypatch.setattr(_task_stream, "_worker", lambda worker=worker: (worker, 3))
        stream = iter(tasks.as_iterable())
        shares.append([next(stream)[0] for _ in range(2)])
    ordered = [shares[i % 3][i // 3] for i in range(6)]
    for offset, x in enumerate(ordered):
        np.testing.assert_array_equal(x, tasks[1 + offset][0])
    fixed = TaskDataset(data, pipeline(data, 3, 2), num_tasks=5, seed=8, backend="numpy")
    monkeypatch.setattr(_task_stream, "_worker", lambda: (1, 2))
    assert [x.tobytes() for x, _ in fixed.as_iterable()] == [fixed[i][0].tobytes() for i in (1, 3)]
    assert len(fixed.as_iterable()) == 5


@pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")
def test_dataloader_worker_started_by_spawn_builds_the_same_tasks():
    import torch

    raw = torch.utils.data.TensorDataset(torch.randn(48, 3), torch.arange(48) % 12)
    tasks = TaskDataset(
        raw,
        [FusedNWaysKShots(raw, 3, 2), LoadData(raw), RemapLabels(raw), ConsecutiveLabels(raw)],
        num_tasks=4,
        seed=1,
        backend="torch",
    )
    assert len(tasks) == 4 and isinstance(tasks.as_iterable(), torch.utils.data.IterableDataset)
    loader = torch.utils.data.DataLoader(
        tasks, batch_size=None, num_workers=1, multiprocessing_context="spawn"
    )
    loaded = list(loader)
    assert len(loaded) == 4
    for index, (x, y) in enumerate(loaded):
        assert torch.equal(x, tasks[index][0]) and torch.equal(y, tasks[index][1])
