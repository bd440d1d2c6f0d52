"""MetaLearner in a job of 2 local processes against 1 process, on both backends: second-order
MAML on Omniglot-shaped synthetic tasks (8x8 images, 3-way 1-shot; torch: a 1-block conv4 with
batch norm and pooling, jax: an MLP on the flattened images, for compile time), 3 meta-steps with
a checkpoint and resume after the second, then an evaluation.

torch: gloo, a meta-batch of 5 tasks (unequal shares 3 + 2, weighted by task count); jax:
``jax.distributed`` with gloo CPU collectives, a meta-batch of 4 (jax shards evenly), an evaluation
of 5 tasks (padded to the devices). Tolerances on losses, parameters and Adam's state: float32
1e-5 relative + 1e-6 absolute (the shares' means are added in another order: float32 rounding;
measured at most 2.4e-7), float64 1e-10 (relative and absolute). Accuracies are equal. In float32
the convolution bias in front of batch norm is left out (see ``_zero_gradient_keys``).

The module is also the worker: ``python tests/test_distributed_runs.py BACKEND OUT DTYPE...``
(every rank; rank 0 writes ``OUT/<dtype>.npz``)."""

import contextlib
import os
import sys

import numpy as np
import pytest

WAYS, SHOTS, QUERIES, STEPS, EVAL_TASKS = 3, 1, 2, 3, 5
SHAPE = {"torch": (1, 8, 8), "jax": (64,)}  # one sample: an 8x8 image (flattened for the MLP)
BATCH = {"torch": 5, "jax": 4}
TASK_MAP = {"torch": "sequential", "jax": "vmap"}
TOLERANCE = {"float32": (1e-5, 1e-6), "float64": (1e-10, 1e-10)}  # (relative, absolute)


def _model(backend):
    """torch: a conv4 block with batch norm; jax: an MLP (a conv net's second-order step takes
    jax twice as long to compile on a CPU, and it compiles in 3 processes here)."""
    from l2l_multi._registry import ModelSpec

    if backend == "jax":
        return ModelSpec(
            "tiny-omniglot-mlp",
            "MLP",
            {"input_size": 64, "sizes": (16,)},
            (64,),
            False,
            "an MLP on flattened 8x8 images",
        )

    arguments = {"channels": 1, "hidden_size": 6, "layers": 1, "embedding_size": 6}  # 8x8 -> 1x1
    return ModelSpec(
        "tiny-omniglot-cnn",
        "CNN4",
        arguments,
        (1, 8, 8),
        True,
        "Omniglot's conv4 (batch norm, max-pooling), 1 block of 6 channels, on 8x8 images",
    )


def _tasks(seed, backend):
    from l2l_multi.data import MetaDataset, TaskDataset, synthetic_classification
    from l2l_multi.data.transforms import ConsecutiveLabels, FusedNWaysKShots, LoadData, RemapLabels

    data = synthetic_classification(num_classes=12, samples_per_class=4, shape=SHAPE[backend], seed=3)
    data = MetaDataset(data)
    transforms = [
        FusedNWaysKShots(data, WAYS, SHOTS + QUERIES),
        LoadData(data),
        RemapLabels(data),
        ConsecutiveLabels(data),
    ]
    return TaskDataset(data, transforms, seed=seed, backend="numpy")


def run(backend, dtype, checkpoint_file):
    """3 meta-steps, a checkpoint after the second (rank 0 writes it), the third step, then every
    rank resumes from that checkpoint file and takes the third step again (the same learner
    object: a new one would compile its step again), then an evaluation; returns ``{"metrics":
    [...], "evaluation": {...}, "state": state_dict}`` (every rank the same)."""
    import l2l_multi as l2l
    from l2l_multi.data import partition_task_batch
    from l2l_multi.experiment import _checkpoint

    meta = l2l.MetaLearner(
        "maml",
        _model(backend),
        WAYS,
        lr=0.4,
        adaptation_steps=1,
        seed=0,
        backend=backend,
        dtype=dtype,
        task_map=TASK_MAP[backend],
    )
    tasks, metrics = _tasks(1, backend), []

    def step():
        X, y = tasks.sample_batch(BATCH[backend])
        (sx, sy), (qx, qy) = partition_task_batch(X, y, shots=SHOTS)
        return meta.train_step(sx, sy, qx, qy)

    for _ in range(STEPS - 1):
        metrics.append(step())
    if processes.is_main:  # rank 0 alone writes
        with open(checkpoint_file, "wb") as stream:
            stream.write(_checkpoint.dumps({"learner": meta.state_dict(), "tasks": tasks.state_dict()}))
    processes.any(False)  # the file is complete before anyone reads it
    step()  # moves on, so the resume below must really restore the state
    with open(checkpoint_file, "rb") as stream:
        saved = _checkpoint.loads(stream.read())
    meta.load_state_dict(saved["learner"])
    tasks.load_state_dict(saved["tasks"])
    metrics.append(step())
    X, y = _tasks(2, backend).sample_batch(EVAL_TASKS)
    (sx, sy), (qx, qy) = partition_task_batch(X, y, shots=SHOTS)
    evaluation = meta.evaluate(sx, sy, qx, qy, adaptation_steps=2)
    # torch (batch norm): each rank scores its share, each query on a batch of its support set and
    # itself (jax's MLP has no batch norm; its sharded non-transductive path passed once, 4 s more)
    each_query = {}
    if backend == "torch":
        each_query = meta.evaluate(sx, sy, qx, qy, adaptation_steps=2, transductive=False)
    names = [n for n, _ in meta.algorithm.named_parameters()] if backend == "torch" else []
    return {
        "metrics": metrics,
        "evaluation": evaluation,
        "non-transductive": each_query,
        "state": meta.state_dict(),
        "names": names,
    }


def _flat(tree, prefix=""):
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in _flat(value, f"{prefix}{key}/").items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for i, value in enumerate(tree) for k, v in _flat(value, f"{prefix}{i}/").items()}
    return {prefix: np.asarray(tree)}


def _summary(result):
    flat = {f"state/{k}": v for k, v in _flat(result["state"]).items() if np.asarray(v).dtype != object}
    for i, row in enumerate(result["metrics"]):
        flat.update({f"step{i}/{k}": np.asarray(v) for k, v in row.items()})
    flat.update({f"evaluation/{k}": np.asarray(v) for k, v in result["evaluation"].items()})
    flat.update({f"non-transductive/{k}": np.asarray(v) for k, v in result["non-transductive"].items()})
    flat["names"] = np.asarray(result["names"], dtype=str)  # torch: Adam's state is by position
    return flat


processes = None  # this process's place in the job (the worker's, or the test's lone one)


def worker(backend, out, dtypes):
    global processes
    from l2l_multi.experiment._processes import join

    processes = join(backend)
    try:
        for dtype in dtypes:
            if backend == "jax":
                import jax

                jax.config.update("jax_enable_x64", dtype == "float64")
            result = _summary(run(backend, dtype, os.path.join(out, f"checkpoint_{dtype}.npz")))
            if processes.is_main:
                np.savez(os.path.join(out, f"{dtype}.npz"), **result)
    finally:
        processes.close()


def _zero_gradient_keys(backend, summary):
    """The convolution bias in front of batch norm: its exact meta-gradient is 0 (the norm removes
    a per-channel constant), so in float32 it is rounding noise that Adam scales to full steps;
    its value and Adam state are compared in float64 only."""
    if backend == "jax":
        return [k for k in summary if "conv" in k.lower() and k.rstrip("/").endswith("bias")]
    positions = [i for i, name in enumerate(summary["names"]) if name.endswith("conv.bias")]
    prefixes = [f"state/optimizer/state/{i}/" for i in positions]
    return [k for k in summary if k.endswith("conv.bias/") or k.startswith(tuple(prefixes))]


@pytest.mark.slow  # one launch of 2 processes per backend, both dtypes in it (jax compiles most)
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_two_processes_equal_one(tmp_path, backend):
    dtypes = ("float32", "float64")
    pytest.importorskip(backend)
    import _helpers

    from l2l_multi.experiment._processes import Processes, launch_local

    global processes
    env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(_helpers.REPO_ROOT)}
    launch_local(2, [sys.executable, __file__, backend, str(tmp_path), *dtypes], timeout=600, env=env)
    processes = Processes(backend)  # the reference: this process alone
    for dtype in dtypes:
        context = contextlib.nullcontext()
        if backend == "jax":
            import jax

            context = jax.enable_x64(dtype == "float64")
        with context:
            single = _summary(run(backend, dtype, str(tmp_path / f"single_{dtype}.npz")))
        double = dict(np.load(tmp_path / f"{dtype}.npz"))
        assert sorted(single) == sorted(double)
        assert len([k for k in single if k.startswith("state/")]) > 6 and "evaluation/task_losses" in single
        assert backend != "torch" or "non-transductive/task_losses" in single
        skipped = _zero_gradient_keys(backend, single) if dtype == "float32" else []
        assert len(skipped) <= 4, skipped  # the bias and its Adam moments, nothing else
        for key, value in single.items():
            if key in skipped:
                continue
            if "accurac" in key or value.dtype.kind in "iubU":
                np.testing.assert_array_equal(double[key], value, err_msg=f"{dtype} {key}")
            else:
                rtol, atol = TOLERANCE[dtype]
                np.testing.assert_allclose(double[key], value, rtol=rtol, atol=atol, err_msg=f"{dtype} {key}")


def test_relaunch_arguments_drop_processes():
    from l2l_multi.experiment._processes import relaunch_arguments

    argv = ["--quick", "--processes", "2", "--out", "x", "--processes=3", "--seed", "1"]
    assert relaunch_arguments(argv) == ["--quick", "--out", "x", "--seed", "1"]


def test_launcher_stops_the_others_when_one_fails():
    import time

    from l2l_multi.experiment._processes import launch_local

    code = (
        "import os, sys, time\nif os.environ['RANK'] == '1':\n"
        "    sys.exit('x' * 9000 + ' rank 1 gives up: no data')\ntime.sleep(60)"
    )
    began = time.monotonic()
    with pytest.raises(SystemExit) as raised:
        launch_local(2, [sys.executable, "-c", code])
    assert time.monotonic() - began < 30  # rank 0 was stopped, not waited for
    message = str(raised.value)  # the end of the failing process's stderr, not cut off before it
    assert message.startswith("process 1 of 2 exited with status 1; the end of its stderr:\nxxx")
    assert message.endswith("rank 1 gives up: no data\n") and len(message) < 7000


def test_launcher_tries_another_port_when_the_first_is_taken(tmp_path):
    """The first launch's rank 0 fails as torch's store does when MASTER_PORT was taken in the
    meantime; the launcher starts every process again with another port, once."""
    from l2l_multi.experiment._processes import launch_local

    log = tmp_path / "launches.txt"
    code = (
        "import os, sys\nrank, port = os.environ['RANK'], os.environ['MASTER_PORT']\n"
        f"first = not os.path.exists({str(tmp_path / 'tried')!r})\n"
        f"with open({str(log)!r}, 'a') as f: f.write(rank + ' ' + port + '\\n')\n"
        "if rank == '0' and first:\n"
        f"    open({str(tmp_path / 'tried')!r}, 'w').close()\n"
        "    sys.exit(f'failed to listen on any local network address. port: {port}, name: EADDRINUSE')\n"
    )
    launch_local(2, [sys.executable, "-c", code])
    launches = [line.split() for line in log.read_text().splitlines()]
    assert sorted(rank for rank, _ in launches) == ["0", "0", "1", "1"]
    first = next(port for rank, port in launches if rank == "0")
    assert {port for _, port in launches} - {first}  # the second launch had another port
    # a failure that names the port but is not a bind failure is not retried; nor is a second one
    code = "import os, sys\nsys.exit('rank ' + os.environ['RANK'] + ' port ' + os.environ['MASTER_PORT'])"
    with pytest.raises(SystemExit, match="exited with status 1"):
        launch_local(1, [sys.executable, "-c", code])
    code = "import os, sys\nsys.exit('EADDRINUSE port: ' + os.environ['MASTER_PORT'])"
    with pytest.raises(SystemExit, match="EADDRINUSE"):
        launch_local(1, [sys.executable, "-c", code])


def test_free_port_lies_below_the_ephemeral_range():
    import socket

    from l2l_multi.experiment._processes import PORT_FLOOR, _ephemeral_floor, free_port

    port = free_port()
    assert PORT_FLOOR <= port < _ephemeral_floor()
    with socket.socket() as probe:  # free indeed
        probe.bind(("127.0.0.1", port))


@pytest.mark.parametrize(
    "variables,match",
    [
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' must be an int >= 1"),
        ({"WORLD_SIZE": "2"}, "lacks RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT"),
        (
            {"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "1"},
            "RANK=2 must be below WORLD_SIZE=2",
        ),
    ],
)
def test_join_refuses_bad_variables(monkeypatch, variables, match):
    from l2l_multi.experiment._processes import TORCHRUN_VARIABLES, join

    for name in TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit, match=match):
        join("torch")
    with pytest.raises(ValueError, match="backend='numpy' is not one of 'torch', 'jax'"):
        join("numpy")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    worker(sys.argv[1], sys.argv[2], sys.argv[3:])
