"""The compiled kernels against their pure-Python twin and against independent references."""

import numpy as np
import pytest

from l2l_multi.data import _kernels_py, compiled_available

compiled = pytest.importorskip("l2l_multi.data._kernels") if compiled_available() else None
needs_compiled = pytest.mark.skipif(compiled is None, reason="compiled kernels not built")
SEEDS = [0, 1, 2**63, 2**64 - 1, 123456789]


@needs_compiled
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("population, n", [(1, 1), (5, 5), (1623, 20), (100000, 3)])
def test_choose_is_identical_in_both_modes(seed, population, n):
    a = compiled.choose(population, n, seed)
    b = _kernels_py.choose(population, n, seed)
    assert a.dtype == b.dtype == np.int64
    np.testing.assert_array_equal(a, b)
    assert len(set(a.tolist())) == n and a.min() >= 0 and a.max() < population


@needs_compiled
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("replacement", [False, True], ids=["without", "with"])
def test_sample_shots_is_identical_in_both_modes(seed, replacement):
    rng = np.random.default_rng(seed % 2**32)
    label_ids = rng.integers(0, 30, size=600)
    offsets, members = _kernels_py.group_by_label(label_ids, 30)
    classes = np.asarray(rng.permutation(30)[:7], dtype=np.int64)
    k = int(min(np.diff(offsets)[classes]))
    a = compiled.sample_shots(offsets, members, classes, k, replacement, seed)
    b = _kernels_py.sample_shots(offsets, members, classes, k, replacement, seed)
    np.testing.assert_array_equal(a, b)
    # every pick belongs to its class, class-major
    np.testing.assert_array_equal(label_ids[a].reshape(7, k), np.repeat(classes[:, None], k, 1))
    if not replacement:
        assert len(set(a.tolist())) == len(a)


@needs_compiled
@pytest.mark.parametrize("seed", SEEDS)
def test_fused_is_identical_in_both_modes(seed):
    label_ids = np.arange(200) % 40
    offsets, members = compiled.group_by_label(label_ids, 40)
    candidates = np.arange(0, 40, 2, dtype=np.int64)
    ca, ia = compiled.fused_ways_shots(offsets, members, candidates, 5, 3, False, seed)
    cb, ib = _kernels_py.fused_ways_shots(offsets, members, candidates, 5, 3, False, seed)
    np.testing.assert_array_equal(ca, cb)
    np.testing.assert_array_equal(ia, ib)
    assert set(ca.tolist()) <= set(candidates.tolist())


@pytest.mark.parametrize("module", ["python", pytest.param("compiled", marks=needs_compiled)])
def test_group_by_label_matches_stable_argsort(module):
    kernels = _kernels_py if module == "python" else compiled
    label_ids = np.random.default_rng(0).integers(0, 50, size=5000)
    offsets, members = kernels.group_by_label(label_ids, 53)  # 3 labels with no samples
    np.testing.assert_array_equal(np.diff(offsets), np.bincount(label_ids, minlength=53))
    np.testing.assert_array_equal(members, np.argsort(label_ids, kind="stable"))
    with pytest.raises(ValueError, match="outside"):
        kernels.group_by_label(np.array([0, 5]), 3)


@pytest.mark.parametrize("module", ["python", pytest.param("compiled", marks=needs_compiled)])
def test_choose_is_uniform(module):
    """Chi-square test: each element of range(10) equally likely in every position."""
    kernels = _kernels_py if module == "python" else compiled
    draws = np.stack([kernels.choose(10, 3, seed) for seed in range(6000)])
    for position in range(3):
        counts = np.bincount(draws[:, position], minlength=10)
        chi_square = ((counts - 600) ** 2 / 600).sum()
        assert chi_square < 27.9  # 99.9th percentile of chi2 with 9 degrees of freedom


def test_choose_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n <= population"):
        _kernels_py.choose(3, 4, 0)
    if compiled is not None:
        with pytest.raises(ValueError, match="n <= population"):
            compiled.choose(3, 4, 0)


@needs_compiled
@pytest.mark.parametrize(
    "replacement, fused, remap, consecutive",
    [(False, True, 2, True), (True, False, 1, False), (False, False, 0, True)],
    ids=["fused-shuffled-consecutive", "replacement-ordered", "no-remap"],
)
def test_plan_sampler_matches_plan_tasks_in_both_modes(replacement, fused, remap, consecutive):
    """The bound sampler (scratch kept and restored between tasks) against the one-call kernel
    and the pure-Python twin, one task at a time and in batches, after a pickle round trip."""
    import pickle

    label_ids = np.random.default_rng(5).integers(0, 60, size=900)
    offsets, members = _kernels_py.group_by_label(label_ids, 60)
    candidates = np.arange(4, 60, dtype=np.int64)
    arguments = (offsets, members, candidates, 6, 3, replacement, fused, remap, consecutive)
    tasks = np.array([0, 7, 7, 2**40, 3], dtype=np.int64)
    expected = _kernels_py.plan_tasks(*arguments, 2**63 + 5, tasks)
    for sampler in (compiled.PlanSampler(*arguments), _kernels_py.PlanSampler(*arguments)):
        for candidate in (sampler, pickle.loads(pickle.dumps(sampler))):
            rows = [candidate.plan_one(2**63 + 5, int(t)) for t in tasks]
            batched = candidate.plan(2**63 + 5, tasks)
            np.testing.assert_array_equal(np.stack([i for i, _ in rows]), expected[0])
            np.testing.assert_array_equal(batched[0], expected[0])
            np.testing.assert_array_equal(compiled.plan_tasks(*arguments, 2**63 + 5, tasks)[0], expected[0])
            if remap:
                np.testing.assert_array_equal(np.stack([lab for _, lab in rows]), expected[1])
                np.testing.assert_array_equal(batched[1], expected[1])
    with pytest.raises(ValueError, match="fewer than k=50"):
        compiled.PlanSampler(offsets, members, candidates, 6, 50, False, True, 2, True)
