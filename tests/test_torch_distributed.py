"""Distributed meta-training (torch.distributed, gloo): two spawned processes, each running
second-order MAML on its shard of a meta-batch, end with the parameters and gradients of one process
running every task; plus sharding, edge cases of gradient averaging, and the errors.

The two worker processes are started once per module (``distributed_results``) and run every
multi-process scenario in one process group, because starting a process that imports torch costs
seconds on this machine while the scenarios themselves take milliseconds.
"""

import doctest
import math
import pathlib
import re
import time
import traceback
from datetime import timedelta

import pytest

# Not from _helpers: the spawned workers import this module, and _helpers would import jax there too.
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available():
    pytest.skip("this torch build has no torch.distributed", allow_module_level=True)

import torch.multiprocessing as mp  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from l2l_multi.backends.torch.algorithms import (  # noqa: E402
    average_gradients,
    broadcast_parameters,
    task_slice,
)

import l2l_multi as l2l  # noqa: E402

WORLD_SIZE = 2
WAYS, SHOTS, QUERIES, FEATURES = 5, 1, 3, 8
INNER_STEPS, INNER_LR, OUTER_LR = 2, 0.4, 0.05
# float64 end to end: the distributed and the single-process runs differ only in summation order.
TOL = {"rtol": 1e-10, "atol": 1e-12}
WORKER_TIMEOUT_S = 120  # normally ~5 s; generous for a loaded 2-core machine, still finite


# ----------------------------------------------------------------------------------------------------
# The meta-training step, shared verbatim by the workers and the single-process reference.


def _make_model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        # no bias before batch norm: its gradient would be rounding noise, which Adam then amplifies
        torch.nn.Linear(FEATURES, 16, bias=False),
        torch.nn.BatchNorm1d(16),
        torch.nn.ReLU(),
        torch.nn.Linear(16, WAYS),
    ).double()


def _meta_batch(n_tasks, seed):
    """``n_tasks`` 5-way 1-shot tasks: (support_x, support_y, query_x, query_y), float64, fixed by seed."""
    gen = torch.Generator().manual_seed(seed)
    tasks = []
    for _ in range(n_tasks):
        means = 2.0 * torch.randn(WAYS, FEATURES, generator=gen, dtype=torch.float64)
        support_y = torch.arange(WAYS).repeat(SHOTS)
        query_y = torch.arange(WAYS).repeat(QUERIES)
        noise = 0.5 * torch.randn(len(support_y) + len(query_y), FEATURES, generator=gen, dtype=torch.float64)
        support_x = means[support_y] + noise[: len(support_y)]
        query_x = means[query_y] + noise[len(support_y) :]
        tasks.append((support_x, support_y, query_x, query_y))
    return tasks


def _query_loss(maml, task):
    support_x, support_y, query_x, query_y = task
    learner = maml.clone()
    for _ in range(INNER_STEPS):
        learner.adapt(F.cross_entropy(learner(support_x), support_y))
    return F.cross_entropy(learner(query_x), query_y)


def _meta_train(model, batches, distributed, weighted):
    """Outer Adam steps over ``batches``; returns per-step grads and the final state (cloned)."""
    maml = l2l.algorithms.MAML(model, lr=INNER_LR, first_order=False)
    opt = torch.optim.Adam(maml.parameters(), lr=OUTER_LR)
    grads = []
    for tasks in batches:
        mine = tasks[task_slice(len(tasks))] if distributed else tasks
        opt.zero_grad()
        if mine:  # an empty shard does no backward but still joins the all-reduce
            (sum(_query_loss(maml, task) for task in mine) / len(mine)).backward()
        if distributed:
            average_gradients(maml.parameters(), num_tasks=len(mine) if weighted else None)
        grads.append([None if p.grad is None else p.grad.clone() for p in maml.parameters()])
        opt.step()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return {"grads": grads, "state": state}


# Scenarios: name -> (tasks per outer step, number of outer steps, weighted by num_tasks)
SCENARIOS = {
    "equal_8_tasks_plain_mean": (8, 2, False),
    "equal_8_tasks_weighted": (8, 2, True),
    "unequal_7_tasks": (7, 2, True),
    "one_task_rank1_empty": (1, 2, True),
}


def _scenario_batches(name):
    n_tasks, steps, _ = SCENARIOS[name]
    return [_meta_batch(n_tasks, seed=1000 * step + n_tasks) for step in range(steps)]


# ----------------------------------------------------------------------------------------------------
# Worker processes.


def _edge_cases(rank):
    """None grads on some ranks, a frozen parameter, mixed dtypes, weights, and num_tasks=0 everywhere."""
    out = {}
    for weighted, check in ((False, True), (True, True), (False, False), (True, False)):
        only_rank0 = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
        both = torch.nn.Parameter(torch.zeros(2, dtype=torch.float32))
        frozen = torch.nn.Parameter(torch.zeros(2), requires_grad=False)
        never = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
        if rank == 0:
            only_rank0.grad = torch.tensor([2.0, 4.0, 6.0], dtype=torch.float64)
        both.grad = torch.tensor([1.0, 2.0]) * (rank + 1)
        frozen.grad = torch.full((2,), 7.0 + rank)  # stale, rank-specific: must stay untouched
        num_tasks = (3, 1)[rank] if weighted else None
        total = average_gradients([only_rank0, both, frozen, never], num_tasks=num_tasks, check=check)
        out[weighted, check] = {
            "total": total,
            "only_rank0": only_rank0.grad,
            "both": both.grad,
            "frozen": frozen.grad,
            "never": never.grad,
        }
    layer = torch.nn.Linear(2, 1)
    for check in (True, False):
        try:
            average_gradients(layer.parameters(), num_tasks=0, check=check)
        except ValueError as error:
            out["all_zero_error", check] = str(error)
    probe = torch.ones(1)
    dist.all_reduce(probe)  # the group is still in step after every rank raised
    out["after_error_sum"] = probe.item()
    return out


def _grads(rank, *shapes, dtype=torch.float32):
    """Parameters of ``shapes`` whose gradients hold ``rank + 1`` (so a finished all-reduce shows)."""
    params = [torch.nn.Parameter(torch.zeros(shape, dtype=dtype)) for shape in shapes]
    for p in params:
        p.grad = torch.full(p.shape, rank + 1.0, dtype=dtype)
    return params


# Precondition cases: name -> (this rank's parameters, num_tasks), each built by rank. Before the
# signature check, the first aborted no process but gave rank 1 a wrong gradient, the others aborted a
# process inside gloo (size mismatch), and "bad_argument_rank1" left rank 0 waiting for gloo's timeout.
PRECONDITION_CASES = {
    "num_tasks_on_rank0_only": lambda rank: (_grads(rank, 3), 2 if rank == 0 else None),
    "more_elements_on_rank1": lambda rank: (_grads(rank, (3, 2), 2 + 2 * rank), None),
    "more_tensors_on_rank1": lambda rank: (_grads(rank, *[(3,)] * (1 + rank)), None),
    "transposed_on_rank1": lambda rank: (_grads(rank, (2, 3) if rank == 0 else (3, 2)), None),
    "float64_on_rank1": lambda rank: (_grads(rank, 4, dtype=(torch.float32, torch.float64)[rank]), None),
    "bad_argument_rank1": lambda rank: (_grads(rank, 3), 1 if rank == 0 else -1),
}


def _precondition_cases(rank):
    """Each case: the error every rank raised, its gradients afterwards, and a probe all-reduce."""
    out = {}
    for name, build in PRECONDITION_CASES.items():
        params, num_tasks = build(rank)
        try:
            average_gradients(params, num_tasks=num_tasks)
            error = None
        except (ValueError, TypeError) as caught:
            error = (type(caught).__name__, str(caught))
        probe = torch.ones(1)
        dist.all_reduce(probe)  # the group is still in step after every rank raised
        out[name] = {"error": error, "grads": [p.grad.clone() for p in params], "probe": probe.item()}
    return out


def _worker(rank, world_size, init_file, out_dir):
    torch.set_num_threads(1)
    try:
        dist.init_process_group(
            "gloo",
            init_method=f"file://{init_file}",
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=60),
        )
        results = {}
        # Ranks build different weights and batch-norm buffers; the broadcast must erase that.
        model = _make_model(seed=rank)
        with torch.no_grad():
            model[1].running_mean.add_(rank)
            model[1].num_batches_tracked.add_(5 * rank)
        broadcast_parameters(model, src=0)
        results["broadcast_state"] = {k: v.clone() for k, v in model.state_dict().items()}
        for name, (_, _, weighted) in SCENARIOS.items():
            model = _make_model(seed=123 + rank)
            broadcast_parameters(model)
            results[name] = _meta_train(model, _scenario_batches(name), distributed=True, weighted=weighted)
        results["shard"] = task_slice(7)
        results["edge_cases"] = _edge_cases(rank)
        results["preconditions"] = _precondition_cases(rank)
        torch.save(results, out_dir / f"rank{rank}.pt")
    except BaseException:
        (out_dir / f"rank{rank}.err").write_text(traceback.format_exc())
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _run_processes(jobs, timeout_s, out_dir):
    """Run each ``(target, args)`` of ``jobs`` in a spawned process (job i is rank i); fail, after
    killing all of them, as soon as one fails or when they are not all done within ``timeout_s``."""
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=target, args=args, daemon=True) for target, args in jobs]
    for proc in procs:
        proc.start()
    deadline = time.monotonic() + timeout_s
    try:
        # Poll rather than join one by one: when one rank dies the others would wait in a collective
        # until gloo's timeout, so stop at the first failure.
        while any(p.is_alive() for p in procs):
            if any(p.exitcode not in (None, 0) for p in procs) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        hung = [rank for rank, p in enumerate(procs) if p.is_alive()]
        failed = [(rank, p.exitcode) for rank, p in enumerate(procs) if p.exitcode not in (None, 0)]
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            proc.join(10)
    errors = "".join(
        f"\n--- rank {r} ---\n{e.read_text()}"
        for r in range(len(procs))
        if (e := out_dir / f"rank{r}.err").exists()
    )
    if failed:
        pytest.fail(f"worker ranks failed (rank, exit code): {failed}; killed the others{errors}")
    if hung:
        pytest.fail(f"worker ranks {hung} still running after {timeout_s} s: killed{errors}")


@pytest.fixture(scope="module")
def distributed_results(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("torch_distributed")
    with pytest.MonkeyPatch.context() as mpatch:
        # Spawned children unpickle _worker by importing this module as tests.test_torch_distributed:
        # make that importable whatever directory pytest was started from.
        mpatch.syspath_prepend(str(REPO_ROOT))
        jobs = [(_worker, (rank, WORLD_SIZE, str(out_dir / "init"), out_dir)) for rank in range(WORLD_SIZE)]
        _run_processes(jobs, WORKER_TIMEOUT_S, out_dir)
    return [torch.load(out_dir / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD_SIZE)]


# ----------------------------------------------------------------------------------------------------
# Multi-process tests.


def _assert_close(actual, expected, what):
    if expected is None or actual is None:
        assert actual is None and expected is None, what
        return
    torch.testing.assert_close(actual, expected, **TOL, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_distributed_maml_matches_single_process(distributed_results, scenario):
    _, _, weighted = SCENARIOS[scenario]
    reference = _meta_train(
        _make_model(seed=123), _scenario_batches(scenario), distributed=False, weighted=weighted
    )
    for rank, results in enumerate(distributed_results):
        got = results[scenario]
        for step, (grads, ref_grads) in enumerate(zip(got["grads"], reference["grads"])):
            assert len(grads) == len(ref_grads)
            for i, (grad, ref) in enumerate(zip(grads, ref_grads)):
                _assert_close(grad, ref, f"rank {rank}, step {step}, grad of parameter {i}")
        assert got["state"].keys() == reference["state"].keys()
        for key, ref in reference["state"].items():
            _assert_close(got["state"][key], ref, f"rank {rank}, final {key}")


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_ranks_end_identical(distributed_results, scenario):
    first, second = (results[scenario] for results in distributed_results)
    for key, value in first["state"].items():
        assert torch.equal(value, second["state"][key]), key  # bitwise: one all-reduce result
    for grads_0, grads_1 in zip(first["grads"], second["grads"]):
        assert all(torch.equal(a, b) for a, b in zip(grads_0, grads_1))


def test_unequal_plain_mean_would_differ():
    """Why the weighting matters: 7 tasks as 4 + 3, averaged plainly, is not the mean over tasks."""
    maml = l2l.algorithms.MAML(_make_model(seed=123), lr=INNER_LR)
    tasks = _meta_batch(7, seed=7)
    losses = [_query_loss(maml, task) for task in tasks]
    plain = (sum(losses[:4]) / 4 + sum(losses[4:]) / 3) / 2
    assert abs(plain.item() - (sum(losses) / 7).item()) > 1e-4


def test_broadcast_parameters_copies_rank0(distributed_results):
    expected = _make_model(seed=0).state_dict()
    for rank, results in enumerate(distributed_results):
        state = results["broadcast_state"]
        for key, value in expected.items():
            assert torch.equal(state[key], value), (rank, key)  # buffers too, incl. the int64 counter
            assert state[key].dtype == value.dtype


def test_shard_from_process_group(distributed_results):
    assert [results["shard"] for results in distributed_results] == [slice(0, 4), slice(4, 7)]


def test_average_gradients_edge_cases(distributed_results):
    for rank, results in enumerate(distributed_results):
        edge = results["edge_cases"]
        plain, weighted = edge[False, True], edge[True, True]
        for unchecked, checked in ((edge[False, False], plain), (edge[True, False], weighted)):
            # check=False sends the task counts inside the gradient buffer: the same result
            assert unchecked.keys() == checked.keys()
            for key, value in checked.items():
                got = unchecked[key]
                assert torch.equal(got, value) if isinstance(value, torch.Tensor) else got == value, key
        assert plain["total"] == 2 and weighted["total"] == 4
        # rank 0 alone had a gradient: it counts as zeros elsewhere, every rank gets the average
        torch.testing.assert_close(plain["only_rank0"], torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
        torch.testing.assert_close(weighted["only_rank0"], torch.tensor([1.5, 3.0, 4.5], dtype=torch.float64))
        # float32 next to float64 in one buffer: averaged, returned in its own dtype
        torch.testing.assert_close(plain["both"], torch.tensor([1.5, 3.0]))
        torch.testing.assert_close(weighted["both"], torch.tensor([1.25, 2.5]))  # (3 * 1 + 1 * 2) / 4
        assert plain["both"].dtype == torch.float32
        for case in (plain, weighted):
            assert torch.equal(case["frozen"], torch.full((2,), 7.0 + rank))
            assert case["never"] is None
        assert "num_tasks=0 on every rank" in edge["all_zero_error", True]
        assert "num_tasks=0 on every rank" in edge["all_zero_error", False]
        assert edge["after_error_sum"] == 2.0


PRECONDITION_ERRORS = {
    "num_tasks_on_rank0_only": r"num_tasks was given on rank\(s\) \[0\] and not on rank\(s\) \[1\]",
    "more_elements_on_rank1": r"parameters of rank\(s\) \[1\] differ from rank 0's \(rank 0: 2 tensors, "
    r"8 elements; rank 1: 2 tensors, 10 elements\)",
    "more_tensors_on_rank1": r"rank 0: 1 tensors, 3 elements; rank 1: 2 tensors, 6 elements",
    "transposed_on_rank1": r"rank 1: 1 tensors, 6 elements; same counts, other shapes, dtypes or order",
    "float64_on_rank1": r"rank 1: 1 tensors, 4 elements; same counts, other shapes, dtypes or order",
}


@pytest.mark.parametrize("case", list(PRECONDITION_CASES))
def test_ranks_that_disagree_all_raise_before_the_all_reduce(distributed_results, case):
    errors = [results["preconditions"][case]["error"] for results in distributed_results]
    assert all(error is not None for error in errors), errors
    if case == "bad_argument_rank1":
        # rank 1's own argument error; rank 0 (whose arguments were fine) names rank 1 instead of waiting
        assert errors[1][0] == "ValueError" and errors[1][1].startswith("num_tasks=-1 must be None or an int")
        assert errors[0][0] == "ValueError" and "rank(s) [1] refused their arguments" in errors[0][1]
    else:
        assert errors[0] == errors[1]  # the same error on every rank
        assert errors[0][0] == "ValueError" and re.search(PRECONDITION_ERRORS[case], errors[0][1]), errors[0]
    for rank, results in enumerate(distributed_results):
        outcome = results["preconditions"][case]
        assert outcome["probe"] == 2.0  # the group is still usable
        for grad in outcome["grads"]:  # nothing was averaged: each rank keeps its own gradient
            assert torch.equal(grad, torch.full_like(grad, rank + 1.0)), (case, rank)


def test_hung_workers_are_killed(tmp_path):
    start = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match=r"ranks \[0, 1\] still running after 1 s: killed"):
        _run_processes([(time.sleep, (60,)), (time.sleep, (60,))], 1, tmp_path)
    assert time.monotonic() - start < 15


def test_failed_worker_stops_the_others(tmp_path):
    start = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match=r"failed \(rank, exit code\): \[\(1, 1\)\]"):
        _run_processes([(time.sleep, (60,)), (math.sqrt, (-1.0,))], 30, tmp_path)  # ValueError in rank 1
    assert time.monotonic() - start < 15  # rank 0 was killed, not waited for


# ----------------------------------------------------------------------------------------------------
# Single-process tests: sharding arithmetic, errors, docstring examples.


@pytest.fixture
def single_process_group():
    """A world of one (gloo, in-memory store), destroyed afterwards so no other test sees it."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_task_slice_partitions_the_batch(world_size):
    for batch_size in range(10):
        shards = [task_slice(batch_size, rank, world_size) for rank in range(world_size)]
        assert [i for s in shards for i in range(batch_size)[s]] == list(range(batch_size))
        sizes = [s.stop - s.start for s in shards]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
        assert all(s.step is None for s in shards)


def test_task_slice_errors():
    with pytest.raises(ValueError, match=r"batch_size=-1 must be an int >= 0"):
        task_slice(-1, 0, 2)
    with pytest.raises(ValueError, match=r"world_size=0 must be an int >= 1"):
        task_slice(4, 0, 0)
    with pytest.raises(ValueError, match=r"rank=2 must be an int in \[0, world_size=2\)"):
        task_slice(4, 2, 2)
    with pytest.raises(ValueError, match=r"batch_size=4.0 must be an int"):
        task_slice(4.0, 0, 2)


def test_not_initialised_errors():
    assert not dist.is_initialized()
    layer = torch.nn.Linear(2, 1)
    layer(torch.ones(1, 2)).sum().backward()
    for call in (
        lambda: average_gradients(layer.parameters()),
        lambda: broadcast_parameters(layer),
        lambda: task_slice(8),
        lambda: task_slice(8, rank=0),
    ):
        with pytest.raises(RuntimeError, match=r"call torch.distributed.init_process_group\(backend"):
            call()
    assert task_slice(8, rank=1, world_size=2) == slice(4, 8)  # both given: no process group needed


def test_argument_errors(single_process_group):
    layer = torch.nn.Linear(2, 1)
    layer(torch.ones(1, 2)).sum().backward()
    with pytest.raises(ValueError, match=r"num_tasks=-1 must be None or an int >= 0"):
        average_gradients(layer.parameters(), num_tasks=-1)
    with pytest.raises(ValueError, match=r"num_tasks=0 on every rank"):
        average_gradients(layer.parameters(), num_tasks=0)
    with pytest.raises(TypeError, match=r"check='yes' must be a bool"):
        average_gradients(layer.parameters(), check="yes")
    params = layer.parameters()
    list(params)
    with pytest.raises(ValueError, match=r"no tensor with requires_grad=True \(an exhausted generator\?\)"):
        average_gradients(params)
    with pytest.raises(TypeError, match=r"parameters\[1\] is a str; expected torch tensors"):
        average_gradients([layer.weight, "bias"])
    embedding = torch.nn.Embedding(4, 2, sparse=True)
    embedding(torch.tensor([1])).sum().backward()
    with pytest.raises(TypeError, match=r"layout torch.sparse_coo; average_gradients supports dense"):
        average_gradients(embedding.parameters())
    with pytest.raises(ValueError, match=r"src=1 must be a global rank, an int in \[0, world_size=1\)"):
        broadcast_parameters(layer, src=1)
    with pytest.raises(TypeError, match=r"module is a list; expected a torch.nn.Module"):
        broadcast_parameters([layer.weight])


def test_single_process_keeps_gradients(single_process_group):
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2)
    layer(torch.randn(4, 3)).pow(2).sum().backward()
    before = [p.grad.clone() for p in layer.parameters()]
    grad_storage = layer.weight.grad.data_ptr()
    assert average_gradients(layer) == 1  # a module is accepted in place of its parameters
    assert all(torch.equal(a, p.grad) for a, p in zip(before, layer.parameters()))  # divided by 1
    assert layer.weight.grad.data_ptr() == grad_storage  # updated in place, not replaced
    assert average_gradients([*layer.parameters(), layer.weight], num_tasks=5) == 5  # duplicates once
    for a, p in zip(before, layer.parameters()):
        torch.testing.assert_close(p.grad, a)  # times 5 then / 5: equal up to rounding


def test_docstring_examples():
    from l2l_multi.backends.torch.algorithms import _distributed

    try:
        failures, tried = doctest.testmod(_distributed, optionflags=doctest.NORMALIZE_WHITESPACE)
    finally:
        initialised = dist.is_initialized()
        if initialised:  # a failed example must not leave a process group behind for other tests
            dist.destroy_process_group()
    assert failures == 0 and tried >= 15
    assert not initialised


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device for nccl")
def test_nccl_cuda_tensors():
    """One rank (nccl refuses two ranks on one GPU): the buffer must live on the gradients' device."""
    dist.init_process_group("nccl", store=dist.HashStore(), rank=0, world_size=1)
    try:
        torch.cuda.set_device(0)
        model = _make_model(seed=0).cuda()
        broadcast_parameters(model)
        maml = l2l.algorithms.MAML(model, lr=INNER_LR)
        task = [t.cuda() for t in _meta_batch(1, seed=3)[0]]
        _query_loss(maml, task).backward()
        before = [p.grad.clone() for p in maml.parameters()]
        assert average_gradients(maml.parameters(), num_tasks=1) == 1
        for a, p in zip(before, maml.parameters()):
            assert p.grad.is_cuda
            torch.testing.assert_close(p.grad, a)
    finally:
        dist.destroy_process_group()
