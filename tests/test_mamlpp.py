"""MAML++ on both backends: the per-step batch-norm rates are learned (torch fix, against finite
differences in float64), and jax ``MAMLpp`` equals torch ``MAMLpp`` on the same weights and
tasks (multi-step loss, adapted parameters, meta-gradients; float64)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
nn = pytest.importorskip("flax.linen")

import jax.numpy as jnp  # noqa: E402
from l2l_multi.backends.jax import algorithms as jalg  # noqa: E402
from l2l_multi.backends.jax.vision.models import BatchNorm  # noqa: E402
from l2l_multi.backends.torch import algorithms as talg  # noqa: E402

import l2l_multi as l2l  # noqa: E402
from l2l_multi import interop  # noqa: E402

F = torch.nn.functional
DOUBLE = torch.float64
STEPS = 2


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _torch_net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5), torch.nn.Tanh(), torch.nn.Linear(5, 3)
    ).double()


class _FlaxNet(nn.Module):
    """The flax twin of ``_torch_net``: layers named like torch's Sequential entries."""

    @nn.compact
    def __call__(self, x, train=True):
        x = nn.Dense(5, name="0")(x)
        x = BatchNorm(momentum=0.1, epsilon=1e-5, name="1")(x, train)
        return nn.Dense(3, name="3")(jnp.tanh(x))


def _mamlpp(seed=0):
    """A torch MAML++ whose rates and per-step batch-norm rows all differ (nothing symmetric)."""
    mamlpp = talg.MAMLpp(_torch_net(seed), lr=0.4, adaptation_steps=STEPS)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for rates in mamlpp.lrs:
            rates.copy_(0.2 + 0.3 * torch.rand(STEPS, generator=generator, dtype=DOUBLE))
        layer = mamlpp.module[1]
        layer.weight.add_(0.2 * torch.randn(layer.weight.shape, generator=generator, dtype=DOUBLE))
        layer.bias.add_(0.2 * torch.randn(layer.bias.shape, generator=generator, dtype=DOUBLE))
    return mamlpp


def _tasks(batch=3, seed=0, ways=3, shots=2, queries=3):
    generator = torch.Generator().manual_seed(seed)
    sx = torch.randn(batch, ways * shots, 4, generator=generator, dtype=DOUBLE)
    qx = torch.randn(batch, ways * queries, 4, generator=generator, dtype=DOUBLE)
    sy = torch.arange(ways).repeat_interleave(shots).repeat(batch, 1)
    qy = torch.arange(ways).repeat_interleave(queries).repeat(batch, 1)
    return sx, sy, qx, qy


def _batch_norm_rates(mamlpp):
    return [rates for rates, per_step in zip(mamlpp.lrs, mamlpp.per_step_parameters()) if per_step]


def _torch_msl(mamlpp, tasks, weights):
    """The multi-step loss with the stateful API: sum_s w[s] * query loss after step s + 1,
    averaged over tasks; and every task's adapted learner."""
    sx, sy, qx, qy = tasks
    total, learners = 0.0, []
    for task in range(sx.shape[0]):
        learner = mamlpp.clone()
        for step in range(STEPS):
            learner.adapt(F.cross_entropy(learner(sx[task]), sy[task]))
            total = total + weights[step] * F.cross_entropy(learner(qx[task]), qy[task])
        learners.append(learner)
    return total / sx.shape[0], learners


# -- torch: the step/row fix ------------------------------------------------------------------


def test_batch_norm_rates_get_a_meta_gradient_equal_to_finite_differences():
    # Before the fix, step s's update wrote batch-norm row s while the next forward read row
    # s + 1: these rates had exactly zero meta-gradient.
    mamlpp = _mamlpp()
    tasks = _tasks(batch=2)
    weights = [0.4, 0.6]
    loss, _ = _torch_msl(mamlpp, tasks, weights)
    loss.backward()
    rates = _batch_norm_rates(mamlpp)
    assert len(rates) == 2  # weight and bias of the one batch-norm layer
    analytic = torch.stack([r.grad for r in rates])
    assert analytic.abs().min() > 1e-6  # every step's rate of both tensors
    numeric = torch.zeros_like(analytic)
    eps = 1e-6
    for i, r in enumerate(rates):
        for step in range(STEPS):
            values = []
            for sign in (1, -1):
                with torch.no_grad():
                    r[step] += sign * eps
                values.append(_torch_msl(mamlpp, tasks, weights)[0].item())
                with torch.no_grad():
                    r[step] -= sign * eps
            numeric[i, step] = (values[0] - values[1]) / (2 * eps)
    torch.testing.assert_close(analytic, numeric, rtol=1e-6, atol=1e-10)


def test_an_adapt_step_moves_every_later_batch_norm_row():
    mamlpp = _mamlpp()
    sx, sy, _, _ = (t[0] for t in _tasks(batch=1))
    learner = mamlpp.clone()
    before = learner.module[1].weight.detach().clone()
    loss = F.cross_entropy(learner(sx), sy)
    (grad,) = torch.autograd.grad(loss, learner.module[1].weight, retain_graph=True)
    assert grad[1:].abs().max() == 0  # the forward at step 0 reads row 0 only
    learner.adapt(loss)
    rate = mamlpp.lrs[2][0]  # module[1].weight is the third parameter
    after = learner.module[1].weight.detach()
    torch.testing.assert_close(after[0], before[0])
    for row in (1, 2):
        torch.testing.assert_close(after[row], before[row] - rate.detach() * grad[0])
    torch.testing.assert_close(
        learner.module[0].weight.detach(),
        mamlpp.module[0].weight.detach()
        - mamlpp.lrs[0][0].detach()
        * torch.autograd.grad(F.cross_entropy(mamlpp.clone()(sx), sy), mamlpp.module[0].weight)[0],
    )


# -- jax against torch ---------------------------------------------------------------------


def _to_jax_meta(algorithm, mamlpp):
    """The torch MAML++'s weights, statistics and rates as jax MAML++ meta-parameters."""
    rows = [
        interop.torch_to_flax(mamlpp.plain_module(row), _FlaxNet(), input_shape=(2, 4))
        for row in range(STEPS + 1)
    ]
    rates = [
        interop.torch_to_flax(mamlpp.plain_module(0, rates_of_step=s), _FlaxNet(), input_shape=(2, 4))[
            "params"
        ]
        for s in range(STEPS)
    ]
    return algorithm.from_step_variables(rows, rates)


def _flax(mamlpp, tree):
    return mamlpp.flax_layout(tree, flax_module=_FlaxNet(), input_shape=(2, 4))


def _relative(actual, expected):
    actual, expected = jax.tree_util.tree_leaves(actual), jax.tree_util.tree_leaves(expected)
    assert len(actual) == len(expected)
    scale = max(float(np.abs(np.asarray(e)).max()) for e in expected)
    return max(float(np.abs(np.asarray(a) - np.asarray(e)).max()) for a, e in zip(actual, expected)) / scale


def test_jax_equals_torch_on_the_same_weights_and_tasks():
    mamlpp = _mamlpp()
    tasks = _tasks()
    weights = [0.3, 0.7]
    torch_loss, learners = _torch_msl(mamlpp, tasks, weights)
    torch_loss.backward()
    algorithm = jalg.MAMLpp(_FlaxNet(), lr=0.4, adaptation_steps=STEPS)
    meta = _to_jax_meta(algorithm, mamlpp)
    assert meta["model"]["batch_stats"]["1"]["mean"].shape == (STEPS + 1, 5)
    sx, sy, qx, qy = (jnp.asarray(t.numpy()) for t in tasks)

    def msl(learned):  # the running statistics (int counters among them) are not differentiated
        full = {"model": {**meta["model"], "params": learned["params"]}, "lrs": learned["lrs"]}

        def one(sx, sy, qx, qy):
            return algorithm.task_loss(full, sx, sy, qx, qy, steps=STEPS, step_weights=jnp.array(weights))[0]

        return jax.vmap(one)(sx, sy, qx, qy).mean()

    learned = {"params": meta["model"]["params"], "lrs": meta["lrs"]}

    @jax.jit  # one compilation for the meta-gradients and the adapted parameters
    def step(learned):
        adapted = jax.vmap(lambda x, y: algorithm.adapt(meta, x, y, steps=STEPS))(sx, sy)
        return jax.value_and_grad(msl)(learned), adapted

    (jax_loss, grads), adapted = step(learned)
    assert abs(float(jax_loss) - torch_loss.item()) <= 1e-12 * abs(torch_loss.item())
    live = _flax(mamlpp, mamlpp.meta_parameters())  # the two conversions agree exactly
    assert _relative(live["model"]["params"], meta["model"]["params"]) == 0
    assert _relative(live["lrs"], meta["lrs"]) == 0
    torch_grads = {
        key: {name: p.grad for name, p in tree.items()} for key, tree in mamlpp.meta_parameters().items()
    }
    expected = _flax(mamlpp, torch_grads)
    assert _relative(grads["params"], expected["model"]["params"]) < 1e-9
    assert _relative(grads["lrs"], expected["lrs"]) < 1e-9
    assert float(jnp.abs(grads["lrs"]["1"]["scale"]).min()) > 1e-6  # batch-norm rates learned here too
    for task, learner in enumerate(learners):
        expected = _flax(mamlpp, {"model": dict(learner.module.named_parameters())})["model"]["params"]
        actual = jax.tree_util.tree_map(lambda a, t=task: a[t], adapted["params"])
        assert _relative(actual, expected) < 1e-9


def test_torch_functional_and_vmapped_paths_equal_the_stateful_loop():
    mamlpp = _mamlpp()
    tasks = _tasks()
    weights = [0.3, 0.7]
    loop, _ = _torch_msl(mamlpp, tasks, weights)
    meta = mamlpp.meta_parameters()
    functional = torch.stack(
        [mamlpp.task_loss(meta, *task, step_weights=weights)[0] for task in zip(*tasks)]
    ).mean()
    assert abs(functional.item() - loop.item()) <= 1e-14
    params = list(mamlpp.parameters())
    expected = torch.autograd.grad(talg.meta_batch_loss(mamlpp, meta, *tasks, steps=STEPS).loss, params)
    result = talg.meta_batch_loss(mamlpp, meta, *tasks, steps=STEPS, task_map="vmap")
    for a, b in zip(torch.autograd.grad(result.loss, params), expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
    stats = mamlpp.module[1].running_mean.clone()
    talg.meta_batch_loss(mamlpp, meta, *tasks, steps=STEPS, task_map="vmap")
    assert torch.equal(stats, mamlpp.module[1].running_mean)  # functional paths never write statistics
    adapted = mamlpp.adapt(meta, tasks[0][0], tasks[1][0])
    assert adapted["1.weight"].shape == (STEPS + 1, 5)
    with pytest.raises(ValueError, match="inner="):
        mamlpp.adapt(meta, tasks[0][0], tasks[1][0], inner=l2l.transforms.sgd(0.1))
    with pytest.raises(ValueError, match=r"steps=3 must be an int in \[0, adaptation_steps=2\]"):
        mamlpp.task_loss(meta, *(t[0] for t in tasks), steps=3)


def test_jax_multi_step_loss_schedule_and_errors():
    algorithm = jalg.MAMLpp(_FlaxNet(), lr=0.3, adaptation_steps=STEPS)
    meta = algorithm.init(jax.random.PRNGKey(0), jnp.ones((4, 4)))
    meta = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, meta)
    sx, sy, qx, qy = (jnp.asarray(t[0].numpy()) for t in _tasks(batch=1))

    @jax.jit  # one compilation for the four losses
    def losses(meta):
        last, outputs = algorithm.task_loss(meta, sx, sy, qx, qy)
        only_last, same = algorithm.task_loss(meta, sx, sy, qx, qy, step_weights=jnp.array([0.0, 1.0]))
        one_step, _ = algorithm.task_loss(meta, sx, sy, qx, qy, steps=1)
        uniform, _ = algorithm.task_loss(meta, sx, sy, qx, qy, step_weights=jalg.msl_weights(STEPS, 0))
        return last, outputs, only_last, same, one_step, uniform

    last, outputs, only_last, same, one_step, uniform = losses(meta)
    np.testing.assert_allclose(only_last, last, rtol=1e-13)
    np.testing.assert_allclose(same, outputs, rtol=1e-13)
    np.testing.assert_allclose(uniform, 0.5 * (one_step + last), rtol=1e-13)
    assert jalg.msl_weights is talg.msl_weights  # one schedule, in the core
    with pytest.raises(ValueError, match=r"steps=3 must be an int in \[0, adaptation_steps=2\]"):
        algorithm.task_loss(meta, sx, sy, qx, qy, steps=3)
    with pytest.raises(ValueError, match="step_weights has shape"):
        algorithm.task_loss(meta, sx, sy, qx, qy, step_weights=[1.0])
    with pytest.raises(ValueError, match="inner="):
        algorithm.adapt(meta, sx, sy, inner=l2l.transforms.sgd(0.1))
    with pytest.raises(ValueError, match="per_step=True"):
        algorithm.from_variables(algorithm.step_variables(meta["model"], 0), per_step=True)
