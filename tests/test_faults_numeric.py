"""Numeric faults: non-finite meta-updates are never committed, bad learning rates and labels are
refused with the argument's name (issue 15, part B).

The NaN tests compare against the learner's own uninterrupted run: a refused step must leave the
meta-parameters and the optimizer state bit for bit as they were, so the next good step gives
exactly the state that the same good step gives without the refused one in between. Models are
tiny (``omniglot-fc`` with 2 tasks of 3 + 3 samples, or a ``Dense``/``Linear`` layer) and each jax
configuration compiles once.
"""

import copy
import re

import numpy as np
import pytest
from _helpers import HAVE_JAX, HAVE_TORCH

import l2l_multi as l2l

needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")
needs_jax = pytest.mark.skipif(not HAVE_JAX, reason="jax not installed")
BACKENDS = [
    pytest.param("torch", marks=needs_torch),
    pytest.param("jax", marks=needs_jax),
]
WAYS = 3


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((2, 6, 784), dtype=np.float32)
    y = np.tile(np.arange(WAYS), (2, 2))
    return x[:, :3], y[:, :3], x[:, 3:].copy(), y[:, 3:]


def _leaves(state):
    """Every array of a state_dict, as numpy, in a fixed order (torch tensors, jax/numpy trees)."""
    if isinstance(state, dict):
        return [leaf for key in sorted(state, key=str) for leaf in _leaves(state[key])]
    if isinstance(state, (list, tuple)):
        return [leaf for item in state for leaf in _leaves(item)]
    if hasattr(state, "detach"):
        return [state.detach().cpu().numpy()]
    if hasattr(state, "_asdict"):
        return _leaves(state._asdict())
    if hasattr(state, "shape") or isinstance(state, (int, float)):
        return [np.asarray(state)]
    return []


def _assert_same_state(actual, expected):
    actual, expected = _leaves(actual), _leaves(expected)
    assert len(actual) == len(expected) > 0
    for a, e in zip(actual, expected):
        np.testing.assert_array_equal(a, e)  # bit for bit (NaN only equals NaN, and is refused)


def _live_parameters(learner):
    """The parameters as the learner holds them, read without ``meta_parameters`` (which would
    run the deferred check first)."""
    if hasattr(learner, "algorithm") and hasattr(learner.algorithm, "named_parameters"):
        return [p.detach().cpu().numpy().copy() for p in learner.algorithm.parameters()]
    import jax

    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(learner.meta_params)]


@pytest.fixture(scope="module", params=BACKENDS)
def learner(request):
    """One learner per backend for the module (the jax step compiles once for these shapes)."""
    return l2l.MetaLearner("maml", "omniglot-fc", WAYS, backend=request.param)


# ------------------------------------------------------------------------------------------------
# non-finite meta-updates


@pytest.mark.parametrize("wait", [True, False], ids=["wait", "no-wait"])
def test_nan_query_is_never_committed(learner, wait):
    sx, sy, qx, qy = _batch()
    learner.train_step(sx, sy, qx, qy)
    start = copy.deepcopy(learner.state_dict())
    good = learner.train_step(*_batch(1))
    after_good = copy.deepcopy(learner.state_dict())
    learner.load_state_dict(copy.deepcopy(start))
    iteration = learner.iterations + 1
    parameters = _live_parameters(learner)

    nan_query = qx.copy()
    nan_query[0, 1, 5] = np.nan
    match = rf"non-finite meta-update at iteration {iteration}: the meta-loss is nan.*query_x contains NaN"
    if wait:
        with pytest.raises(FloatingPointError, match=match):
            learner.train_step(sx, sy, nan_query, qy)
    else:
        metrics = learner.train_step(sx, sy, nan_query, qy, wait=False)
        assert np.isnan(float(metrics["loss"]))
        # undone on the device before anything reads the flag
        for live, before in zip(_live_parameters(learner), parameters):
            np.testing.assert_array_equal(live, before)
        with pytest.raises(FloatingPointError, match=match):
            learner.state_dict()  # the deferred error surfaces at the next call
        learner.check_finite()  # raised once, then cleared
    assert learner.iterations == iteration - 1
    _assert_same_state(learner.state_dict(), start)
    # the run continues exactly as if the bad batch had never come
    again = learner.train_step(*_batch(1), wait=wait)
    assert float(again["loss"]) == good["loss"]
    _assert_same_state(learner.state_dict(), after_good)
    if hasattr(learner, "_step"):  # jax: the guard is part of the one compiled step
        assert learner._step.jitted._cache_size() == 1


def test_nan_support_is_never_committed(learner):
    sx, sy, qx, qy = _batch()
    learner.train_step(sx, sy, qx, qy)
    start = copy.deepcopy(learner.state_dict())
    nan_support = sx.copy()
    nan_support[1, 0, 0] = np.inf
    with pytest.raises(FloatingPointError, match=r"iteration \d+: .*support_x contains NaN/inf"):
        learner.train_step(nan_support, sy, qx, qy)
    _assert_same_state(learner.state_dict(), start)


@needs_torch
@pytest.mark.parametrize("wait", [True, False], ids=["wait", "no-wait"])
def test_torch_nonfinite_gradient_with_finite_loss_names_the_parameter(wait):
    learner = l2l.MetaLearner("maml", "omniglot-fc", WAYS, backend="torch")
    learner.train_step(*_batch())
    start = copy.deepcopy(learner.state_dict())
    name, parameter = list(learner.algorithm.named_parameters())[2]
    handle = parameter.register_hook(lambda grad: grad * float("inf"))  # the loss stays finite
    try:
        metrics = learner.train_step(*_batch(1), wait=wait) if not wait else None
        with pytest.raises(FloatingPointError) as raised:
            learner.train_step(*_batch(1)) if wait else learner.check_finite()
    finally:
        handle.remove()
    message = str(raised.value)
    assert "iteration 2: the meta-loss is finite" in message
    assert f"the meta-gradient of {name} is non-finite" in message and "inputs are finite" in message
    if metrics is not None:
        assert np.isfinite(float(metrics["loss"]))
    _assert_same_state(learner.state_dict(), start)


# ------------------------------------------------------------------------------------------------
# the compiled jax step: documented default, optional guard


@needs_jax
def test_compiled_step_skip_nonfinite_option():
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax
    from l2l_multi.backends.jax import algorithms

    maml = algorithms.MAML(nn.Dense(WAYS), lr=0.5)
    meta = maml.init(jax.random.PRNGKey(0), jnp.ones((1, 4)))
    optimizer = optax.adam(1e-2)
    state = optimizer.init(meta)
    rng = np.random.default_rng(0)
    sx, qx = rng.normal(size=(2, 3, 4)).astype(np.float32), rng.normal(size=(2, 6, 4)).astype(np.float32)
    sy, qy = np.tile(np.arange(WAYS), (2, 1)), np.tile(np.arange(WAYS), (2, 2))
    plain = algorithms.make_meta_train_step(maml, optimizer)
    guarded = algorithms.make_meta_train_step(maml, optimizer, skip_nonfinite=True)

    # finite batch: the guard changes nothing
    meta_a, state_a, metrics_a = plain(meta, state, sx, sy, qx, qy)
    meta_b, state_b, metrics_b = guarded(meta, state, sx, sy, qx, qy)
    assert isinstance(metrics_b, algorithms.CheckedStepMetrics) and bool(metrics_b.is_finite)
    assert all(bool(flag) for flag in jax.tree_util.tree_leaves(metrics_b.gradients_finite))
    _assert_same_state((meta_b, state_b), (meta_a, state_a))
    assert float(metrics_b.loss) == float(metrics_a.loss)

    # NaN query: the default keeps its documented behaviour (NaN parameters), the guard keeps all
    bad_qx = qx.copy()
    bad_qx[1, 2, 0] = np.nan
    meta_nan, _, metrics_nan = plain(meta_a, state_a, sx, sy, bad_qx, qy)
    assert np.isnan(float(metrics_nan.loss))
    assert any(np.isnan(np.asarray(leaf)).any() for leaf in jax.tree_util.tree_leaves(meta_nan))
    meta_c, state_c, metrics_c = guarded(meta_b, state_b, sx, sy, bad_qx, qy)
    assert not bool(metrics_c.is_finite) and np.isnan(float(metrics_c.loss))
    _assert_same_state((meta_c, state_c), (meta_b, state_b))  # Adam's count included
    assert int(state_c[0].count) == 1
    assert guarded.jitted._cache_size() == 1  # the select lives in the one compiled step

    # a finite loss with a non-finite gradient (ANIL's features, not adapted inner): the flags
    # name the leaf, and the guard keeps everything
    anil = algorithms.ANIL(_features_with_nan_gradient(lambda variables, x: x), nn.Dense(WAYS), 0.5)
    head = nn.Dense(WAYS).init(jax.random.PRNGKey(1), jnp.ones((1, 4)))
    anil_meta = anil.from_variables({"params": {"scale": jnp.ones(())}}, head)
    anil_state = optimizer.init(anil_meta)
    odd = algorithms.make_meta_train_step(anil, optimizer, skip_nonfinite=True)
    meta_d, state_d, metrics_d = odd(anil_meta, anil_state, sx, sy, qx, qy)
    assert np.isfinite(float(metrics_d.loss)) and not bool(metrics_d.is_finite)
    flags = metrics_d.gradients_finite
    assert not bool(flags["features"]["params"]["scale"])
    assert all(bool(flag) for flag in jax.tree_util.tree_leaves(flags["model"]))
    _assert_same_state((meta_d, state_d), (anil_meta, anil_state))

    with pytest.raises(TypeError, match=r"skip_nonfinite='yes' must be True or False"):
        algorithms.make_meta_train_step(maml, optimizer, skip_nonfinite="yes")


def _features_with_nan_gradient(features):
    """``features`` plus ``sqrt(k - k)`` for the first parameter ``k``: the same values, but the
    gradient of ``k`` is NaN (0 times the infinite slope of sqrt at 0). Only ANIL's features: the
    inner loop, which differentiates the head alone, stays finite."""
    import jax
    import jax.numpy as jnp

    def features_with_nan_gradient(variables, x):
        first = jax.tree_util.tree_leaves(variables["params"])[0].ravel()[0]
        return features(variables, x) + jnp.sqrt(first - first)

    return features_with_nan_gradient


@needs_jax
def test_jax_metalearner_names_a_nonfinite_gradient():
    """The host side of the jax guard: a learner whose compiled step is rebuilt around features
    with a NaN gradient and a finite loss (nothing from outside can make the stock model do that)."""
    import flax.linen as nn
    import jax
    from l2l_multi.backends.jax import algorithms

    learner = l2l.MetaLearner("anil", "omniglot-fc", WAYS, backend="jax")
    anil = algorithms.ANIL(_features_with_nan_gradient(learner.algorithm.features), nn.Dense(WAYS), 0.4)
    learner._step = algorithms.make_meta_train_step(anil, learner.optimizer, skip_nonfinite=True)
    start = copy.deepcopy(learner.state_dict())
    first_path = jax.tree_util.tree_flatten_with_path(learner.meta_params["features"]["params"])[0][0][0]
    first = ".".join(["features", "params", *(str(key.key) for key in first_path)])
    with pytest.raises(FloatingPointError) as raised:
        learner.train_step(*_batch())
    assert "iteration 1: the meta-loss is finite" in str(raised.value)
    assert f"the meta-gradient of {first} is non-finite; the inputs are finite" in str(raised.value)
    _assert_same_state(learner.state_dict(), start)
    assert learner.iterations == 0


# ------------------------------------------------------------------------------------------------
# learning rates


BAD_RATES = [float("inf"), -1.0, float("nan"), -np.inf]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("argument", ["lr", "meta_lr"])
@pytest.mark.parametrize("value", BAD_RATES, ids=str)
def test_metalearner_refuses_bad_rates(backend, argument, value):
    with pytest.raises(ValueError, match=rf"^{argument}={value!r} must be >= 0 and finite$"):
        l2l.MetaLearner("maml", "omniglot-fc", WAYS, backend=backend, **{argument: value})


@pytest.mark.parametrize("value", BAD_RATES, ids=str)
def test_set_meta_lr_refuses_bad_rates(learner, value):
    with pytest.raises(ValueError, match=rf"meta_lr={value!r} must be >= 0 and finite"):
        learner.set_meta_lr(value)


def _torch_rate_cases():
    import torch

    return [
        *[(value, rf"lr={value!r} must be >= 0 and finite") for value in BAD_RATES],
        (
            torch.tensor(-0.5),
            r"lr=<torch tensor of shape \(\)> must be >= 0 and finite everywhere; entry \(\) is -0.5",
        ),
        (
            torch.tensor([0.1, float("nan")], requires_grad=True),
            r"lr=<torch tensor of shape \(2,\)> .* entry \(1,\) is nan \(1 of 2 entries are not\)",
        ),
    ]


@needs_torch
@pytest.mark.parametrize("algorithm", ["MAML", "MetaSGD", "ANIL", "GBML", "Reptile", "MAMLpp"])
def test_torch_algorithms_refuse_bad_rates(algorithm):
    import torch
    from l2l_multi.backends.torch import algorithms, nn, optim

    build = {
        "MAML": lambda model, value: algorithms.MAML(model, lr=value),
        "MetaSGD": lambda model, value: algorithms.MetaSGD(model, lr=value),
        "ANIL": lambda model, value: algorithms.ANIL(torch.nn.Identity(), model, lr=value),
        "GBML": lambda model, value: algorithms.GBML(model, optim.ModuleTransform(nn.Scale), lr=value),
        "Reptile": lambda model, value: algorithms.Reptile(model, lr=value),
        "MAMLpp": lambda model, value: algorithms.MAMLpp(model, lr=value, adaptation_steps=1),
    }[algorithm]
    for value, match in _torch_rate_cases():
        if algorithm == "MetaSGD" and getattr(value, "ndim", 0) > 0:
            continue  # MetaSGD's lr fills every rate: one number
        with pytest.raises(ValueError, match=match):
            build(torch.nn.Linear(4, 2), value)
    assert isinstance(algorithms.MAML(torch.nn.Linear(4, 2), lr=torch.tensor(0.0)), algorithms.MAML)


@needs_torch
def test_torch_metasgd_refuses_bad_per_parameter_rates():
    import torch
    from l2l_multi.backends.torch import algorithms

    model = torch.nn.Linear(4, 2)
    rates = [torch.full((2, 4), 0.1), torch.tensor([0.1, -0.2])]
    with pytest.raises(ValueError, match=r"lrs\[1\]=<torch tensor of shape \(2,\)> .* entry \(1,\) is -0.2"):
        algorithms.MetaSGD(model, lrs=rates)
    rates[1] = torch.tensor([0.1, float("inf")])
    with pytest.raises(ValueError, match=r"lrs\[1\]=.* entry \(1,\) is inf"):
        algorithms.MetaSGD(model, lrs=rates)
    rates[1] = torch.tensor([0.1, 0.2])
    assert len(algorithms.MetaSGD(model, lrs=rates).lrs) == 2


@needs_jax
@pytest.mark.parametrize("algorithm", ["MAML", "MetaSGD", "ANIL", "GBML", "Reptile"])
def test_jax_algorithms_refuse_bad_rates(algorithm):
    import flax.linen as nn
    import jax.numpy as jnp
    from l2l_multi.backends.jax import algorithms

    from l2l_multi import transforms

    cases = [
        *[(value, rf"lr={value!r} must be >= 0 and finite") for value in BAD_RATES],
        (
            jnp.asarray(-0.5),
            r"lr=<jax array of shape \(\)> must be >= 0 and finite everywhere; entry \(\) is -0.5",
        ),
        (np.array([[0.1, np.inf]]), r"lr=<numpy array of shape \(1, 2\)> .* entry \(0, 1\) is inf"),
    ]
    build = {
        "MAML": lambda value: algorithms.MAML(nn.Dense(2), lr=value),
        "MetaSGD": lambda value: algorithms.MetaSGD(nn.Dense(2), lr=value),
        "ANIL": lambda value: algorithms.ANIL(nn.Dense(4), nn.Dense(2), value),
        "GBML": lambda value: algorithms.GBML(nn.Dense(2), transforms.elementwise_scale(), lr=value),
        "Reptile": lambda value: algorithms.Reptile(nn.Dense(2), value),
    }[algorithm]
    for value, match in cases:
        with pytest.raises(ValueError, match=match):
            build(value)
    assert algorithms.MAML(nn.Dense(2), lr=jnp.asarray(0.0)).lr == 0.0


@needs_jax
def test_jax_traced_rates_are_not_read():
    """A learning rate that is itself being differentiated (a tracer) cannot be checked and passes."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    from l2l_multi.backends.jax import algorithms

    def build(rate):
        return jnp.asarray(algorithms.MAML(nn.Dense(2), lr=rate).lr)

    assert float(jax.jit(build)(jnp.asarray(0.3))) == pytest.approx(0.3)


# ------------------------------------------------------------------------------------------------
# labels


@pytest.mark.parametrize(
    "labels, argument, message",
    [
        (
            "support",
            "support_y",
            r"support_y holds the label -1; class labels must lie in \[0, 3\) \(0 .. 2\)",
        ),
        ("query", "query_y", r"query_y holds the label 3; class labels must lie in \[0, 3\)"),
    ],
    ids=["negative-support", "too-large-query"],
)
def test_metalearner_refuses_bad_labels(learner, labels, argument, message):
    sx, sy, qx, qy = _batch()
    sy, qy = sy.copy(), qy.copy()
    if labels == "support":
        sy[0, 1] = -1
    else:
        qy[1, 2] = WAYS
    iterations = learner.iterations
    with pytest.raises(ValueError, match=message):
        learner.train_step(sx, sy, qx, qy)
    with pytest.raises(ValueError, match=message):
        learner.evaluate(sx, sy, qx, qy)
    assert learner.iterations == iterations


@needs_jax
def test_jax_eager_and_compiled_calls_refuse_bad_labels():
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax
    from l2l_multi.backends.jax import algorithms

    maml = algorithms.MAML(nn.Dense(WAYS), lr=0.5)
    meta = maml.init(jax.random.PRNGKey(0), jnp.ones((1, 4)))
    x = jnp.ones((2, 6, 4))
    y = jnp.tile(jnp.arange(WAYS), (2, 2))
    negative = y.at[1, 4].set(-2)
    with pytest.raises(
        ValueError, match=r"query_y holds the label -2; class labels must lie in \[0, \.\.\.\)"
    ):
        algorithms.meta_batch_loss(maml, meta, x, y, x, negative)
    with pytest.raises(ValueError, match=r"support_y holds the label 7; class labels must lie in \[0, 3\)"):
        algorithms.meta_batch_loss(maml, meta, x, y.at[0, 0].set(7), x, y)
    optimizer = optax.sgd(0.1)
    step = algorithms.make_meta_train_step(maml, optimizer)
    with pytest.raises(ValueError, match=r"support_y holds the label -2"):
        step(meta, optimizer.init(meta), x, negative, x, y)
    assert step.jitted._cache_size() == 0  # refused on the host, before any compile


# ------------------------------------------------------------------------------------------------
# the few-shot driver's --skip-nonfinite


class _PoisonedBatches:
    """``TrainTasks`` stand-in: batch ``i`` (1-based) is ``_batch(i)``, with a NaN query where
    ``poisoned`` (a set of ``i``) holds ``i``, and NaN supports where ``nan_support`` does."""

    def __init__(self, poisoned, nan_support=()):
        self.drawn, self.poisoned, self.nan_support = 0, set(poisoned), set(nan_support)

    def next(self, n, shots):
        self.drawn += 1
        sx, sy, qx, qy = _batch(self.drawn)
        if self.drawn in self.poisoned:
            qx[0, 0, 0] = np.nan
        if self.drawn in self.nan_support:
            sx = sx.copy()
            sx[1, 0, 0] = np.inf
        return (sx, sy), (qx, qy)

    def state_dict(self):
        return {"drawn": self.drawn}

    def load_state_dict(self, state):
        self.drawn = state["drawn"]

    def close(self):
        pass


def _drive(tmp_path, learner, poisoned, allowed, monkeypatch, nan_support=()):
    """Six updates of the few-shot driver (validation every 3) on ``_PoisonedBatches`` with
    ``learner``; returns ``(Training or the raised error, the run folder's path)``."""
    import argparse

    from l2l_multi.experiment import RunFolder, _fewshot_training
    from l2l_multi.experiment._processes import Processes

    def validate(learner, args, tasks, num_tasks, ways, **_):  # a clean batch: no error may leak here
        return {**learner.evaluate(*_batch(99)), "ci95": 0.0}

    monkeypatch.setattr(_fewshot_training, "evaluate_protocol", validate)
    args = argparse.Namespace(
        iterations=6, eval_every=3, meta_batch=2, shots=1, meta_lr=1e-3, meta_lr_halve_every=0,
        algorithm="maml", progress=False, tensorboard=False, max_train_seconds=0, eval_tasks=2,
        test_ways=[WAYS], skip_nonfinite=allowed,
    )  # fmt: skip
    path = tmp_path / f"allowed-{allowed}"
    with RunFolder(path, {"allowed": allowed}) as run:
        try:
            outcome = _fewshot_training.train_learner(
                args, run, learner, _PoisonedBatches(poisoned, nan_support), None, Processes()
            )
        except FloatingPointError as error:
            outcome = error
    return outcome, path


def test_skip_nonfinite_steps_over_refused_updates_exactly(tmp_path, learner, monkeypatch):
    from l2l_multi.experiment import RunFolder

    initial = copy.deepcopy(learner.state_dict())  # (the module's learner: compiled once on jax)
    # 1 (NaN support): refused when queued (torch checks a fresh Adam's first step at once) or at
    # the next queue; 3: refused where validation settles it; 5: refused when update 6 is queued
    training, path = _drive(tmp_path, learner, {3, 5}, 3, monkeypatch, nan_support={1})
    assert training.iterations == 6 and training.skipped == [1, 3, 5]
    assert learner.iterations == initial_iterations(initial) + 3
    driven = copy.deepcopy(learner.state_dict())
    learner.load_state_dict(copy.deepcopy(initial))
    for index in (2, 4, 6):
        learner.train_step(*_batch(index))
    _assert_same_state(driven, learner.state_dict())  # as if the bad batches never came
    with RunFolder(path, {"allowed": 3}, resume=True) as run:
        assert run.checkpoint["skipped"] == [1, 3, 5] and run.checkpoint["iteration"] == 6
        rows = run.read_metrics()
    assert [row["iteration"] for row in rows] == [3, 6] and all(np.isfinite(r["train_loss"]) for r in rows)

    # past the allowance, the next refusal stops the run with the learner's error
    learner.load_state_dict(copy.deepcopy(initial))
    error, _ = _drive(tmp_path, learner, {1, 3, 5}, 2, monkeypatch)
    assert isinstance(error, FloatingPointError) and error.iteration == initial_iterations(initial) + 3
    assert re.search(r"non-finite meta-update at iteration \d+: .*query_x contains NaN", str(error))
    learner.load_state_dict(copy.deepcopy(initial))
    error, _ = _drive(tmp_path, learner, {1}, 0, monkeypatch)  # the default: the first one stops
    assert error.iteration == initial_iterations(initial) + 1


def initial_iterations(state):
    """The committed-update count a learner's ``state_dict`` holds."""
    return int(state["iterations"])
