"""Stateful inner-loop optimizers (l2l_multi.transforms): the same code on torch and jax checked
against optax itself, threaded through the inner loops of both backends (meta-gradients against
finite differences and against the other backend, float64), and GBML's one rule for transforms."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
nn = pytest.importorskip("flax.linen")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402
from _gradcheck import directional_check  # noqa: E402
from l2l_multi.backends.jax import algorithms as jalg  # noqa: E402
from l2l_multi.backends.torch import algorithms as talg  # noqa: E402

import l2l_multi as l2l  # noqa: E402
from l2l_multi import transforms as T  # noqa: E402

F = torch.nn.functional
EPS_ROOT = T.DEFAULT_EPS_ROOT


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


# -- the transforms themselves, against optax ------------------------------------------------

PAIRS = {  # ours, optax's, with the same arguments
    "sgd": (lambda: T.sgd(0.3), lambda: optax.sgd(0.3)),
    "momentum": (lambda: T.sgd(0.3, momentum=0.9), lambda: optax.sgd(0.3, momentum=0.9)),
    "nesterov": (
        lambda: T.sgd(0.3, momentum=0.9, nesterov=True),
        lambda: optax.sgd(0.3, momentum=0.9, nesterov=True),
    ),
    "trace": (lambda: T.trace(0.5), lambda: optax.trace(0.5)),
    "scale_by_adam": (lambda: T.scale_by_adam(eps_root=0.0), lambda: optax.scale_by_adam()),
    "adam": (lambda: T.adam(0.01), lambda: optax.adam(0.01, eps_root=EPS_ROOT)),
    "adam-options": (
        lambda: T.adam(0.01, b1=0.5, b2=0.9, eps=1e-3, eps_root=1e-4),
        lambda: optax.adam(0.01, b1=0.5, b2=0.9, eps=1e-3, eps_root=1e-4),
    ),
    "clip": (lambda: T.clip(0.7), lambda: optax.clip(0.7)),
    "clip_by_global_norm": (lambda: T.clip_by_global_norm(2.0), lambda: optax.clip_by_global_norm(2.0)),
    "chain": (
        lambda: T.chain(T.clip_by_global_norm(2.0), T.adam(0.01)),
        lambda: optax.chain(optax.clip_by_global_norm(2.0), optax.adam(0.01, eps_root=EPS_ROOT)),
    ),
}


def _gradient_sequence(steps=5):
    rng = np.random.default_rng(0)
    # growing scale: the global-norm clip is inactive on the first steps, active later
    return [
        {"w": (0.3 + k) * rng.normal(size=(3, 4)), "b": (0.3 + k) * rng.normal(size=4)} for k in range(steps)
    ]


@pytest.mark.parametrize("framework", ["jax", "torch"])
@pytest.mark.parametrize("name", list(PAIRS))
def test_transforms_match_optax(name, framework):
    ours, theirs = PAIRS[name][0](), PAIRS[name][1]()
    convert = (lambda a: jnp.asarray(a)) if framework == "jax" else (lambda a: torch.as_tensor(a))
    params = {"w": np.ones((3, 4)), "b": np.zeros(4)}
    state, optax_state = ours.init(T.tree_map(convert, params)), theirs.init(params)
    clipped = []
    for grads in _gradient_sequence():
        updates, state = ours.update(T.tree_map(convert, grads), state, T.tree_map(convert, params))
        expected, optax_state = theirs.update(jax.tree_util.tree_map(jnp.asarray, grads), optax_state, params)
        for key in params:
            np.testing.assert_allclose(
                np.asarray(updates[key]), np.asarray(expected[key]), rtol=1e-12, atol=1e-14
            )
            assert str(np.asarray(updates[key]).dtype) == "float64"
        norm = np.sqrt(sum((g**2).sum() for g in grads.values()))
        clipped.append(norm > 2.0)
    assert any(clipped) and not all(clipped)  # both branches of the global-norm clip ran
    leaves = lambda tree: [
        np.asarray(x)
        for x in jax.tree_util.tree_leaves(  # noqa: E731
            T.tree_map(lambda a: a.numpy() if hasattr(a, "numpy") else a, tree)
        )
    ]
    for mine, reference in zip(leaves(state), leaves(optax_state)):
        np.testing.assert_allclose(mine, reference, rtol=1e-12, atol=1e-14)


def test_none_gradients_leave_their_state_and_chain_refuses_another_state():
    adam = T.adam(0.1)
    params = [torch.zeros(2), torch.zeros(3)]
    state = adam.init(params)
    updates, state = adam.update([torch.ones(2), None], state, params)
    assert updates[1] is None and torch.equal(state[0].nu[1], torch.zeros(3))
    assert int(state[0].count) == 1
    momentum = T.sgd(0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"chain of 2 transforms got a state of 3 entries"):
        momentum.update(params, T.chain(T.identity(), T.identity(), T.identity()).init(params))
    with pytest.raises(ValueError, match=r"chain of 2 transforms got a EmptyState"):
        momentum.update(params, T.sgd(0.1).init(params))
    for call, match in [
        (lambda: T.sgd(0.1, nesterov=True), r"nesterov=True needs momentum"),
        (lambda: T.sgd(0.1, momentum=1.0), r"decay=1.0 must be a float in \[0, 1\)"),
        (lambda: T.scale_by_adam(b2=-0.1), r"b2=-0.1 must be a float in \[0, 1\)"),
        (lambda: T.adam(0.1, eps_root=-1.0), r"eps_root=-1.0 must be a float >= 0"),
        (lambda: T.clip_by_global_norm(0.0), r"max_norm=0.0 must be a float > 0"),
        (lambda: T.clip(-1), r"max_delta=-1 must be a float > 0"),
    ]:
        with pytest.raises(ValueError, match=match):
            call()


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_eps_root_keeps_second_order_finite_at_a_zero_gradient(framework):
    """A gradient element that is exactly zero (a dead ReLU) makes sqrt(nu_hat)'s derivative
    infinite: with eps_root=0 (optax's default) the meta-gradient is NaN, with ours finite."""

    def meta_gradient(eps_root):
        adam = T.adam(0.1, eps_root=eps_root)
        curvature = [1.0, 2.0, 0.0]  # the third element's inner gradient is exactly 0

        def meta_loss(w, xp):
            state = adam.init([w])
            for _ in range(2):
                grads = [xp.asarray(curvature, dtype=w.dtype) * w]  # d/dw of sum(c * w^2) / 2
                updates, state = adam.update(grads, state, [w])
                w = w + updates[0]
            return (w * w).sum()

        if framework == "jax":
            return np.asarray(jax.grad(lambda w: meta_loss(w, jnp))(jnp.ones(3)))
        w = torch.ones(3, dtype=torch.float64, requires_grad=True)
        meta_loss(w, torch).backward()
        return w.grad.numpy()

    assert np.isfinite(meta_gradient(EPS_ROOT)).all()
    assert np.isnan(meta_gradient(0.0)).any()


# -- inner loops: torch against finite differences and against jax ---------------------------


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3, name="Dense_1")(jnp.tanh(nn.Dense(5, name="Dense_0")(x)))


def torch_mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()


def to_flax(net):
    layers = [m for m in net if isinstance(m, torch.nn.Linear)]
    return {
        "params": {
            f"Dense_{i}": {
                "kernel": jnp.asarray(m.weight.detach().numpy().T),
                "bias": jnp.asarray(m.bias.detach().numpy()),
            }
            for i, m in enumerate(layers)
        }
    }


def batch(seed=1, tasks=3, samples=6):
    rng = np.random.default_rng(seed)
    sx, qx = rng.normal(size=(tasks, samples, 4)), rng.normal(size=(tasks, samples, 4))
    labels = np.tile(np.arange(3), (tasks, samples // 3))
    return sx, labels, qx, labels.copy()


def torch_meta(algorithm, data, steps, path="loop"):
    tensors = [torch.as_tensor(a) for a in data]
    meta = algorithm.meta_parameters()
    result = talg.meta_batch_loss(algorithm, meta, *tensors, steps=steps, task_map=path)
    grads = torch.autograd.grad(result.loss, list(algorithm.parameters()))
    return result.loss.item(), [g.numpy() for g in grads]


def jax_meta(algorithm, meta, data, steps):
    data = [jnp.asarray(a) for a in data]
    loss_fn = lambda m: jalg.meta_batch_loss(algorithm, m, *data, adaptation_steps=steps)[0]  # noqa: E731
    return jax.value_and_grad(loss_fn)(meta)


def as_torch_layout(flax_params):
    """The flax tree's leaves in torch's parameter order and layout: [w0, b0, w1, b1]."""
    out = []
    for layer in ("Dense_0", "Dense_1"):
        out += [np.asarray(flax_params[layer]["kernel"]).T, np.asarray(flax_params[layer]["bias"])]
    return out


def assert_close(actual, expected, tolerance=1e-12):
    scale = max(float(np.abs(e).max()) for e in expected)
    worst = max(float(np.abs(np.asarray(a) - np.asarray(e)).max()) for a, e in zip(actual, expected))
    assert worst <= tolerance * max(scale, 1.0), (worst, scale)


INNER = {  # torch (ours), jax (optax's implementation: an independent check of ours)
    "adam": (lambda: T.adam(0.05), lambda: optax.adam(0.05, eps_root=EPS_ROOT)),
    "momentum": (lambda: T.sgd(0.3, momentum=0.9), lambda: optax.sgd(0.3, momentum=0.9)),
    "nesterov": (
        lambda: T.sgd(0.3, momentum=0.9, nesterov=True),
        lambda: optax.sgd(0.3, momentum=0.9, nesterov=True),
    ),
    "clip-in-chain": (
        lambda: T.chain(T.clip_by_global_norm(0.05), T.adam(0.05)),
        lambda: optax.chain(optax.clip_by_global_norm(0.05), optax.adam(0.05, eps_root=EPS_ROOT)),
    ),
}


@pytest.mark.parametrize("name", list(INNER))
def test_torch_maml_meta_gradient_equals_finite_differences_and_jax(name):
    torch_inner, jax_inner = INNER[name]
    net, data = torch_mlp(), batch()
    maml = talg.MAML(net, inner=torch_inner())
    tensors = [torch.as_tensor(a) for a in data]
    meta = maml.meta_parameters()
    loss_fn = lambda: talg.meta_batch_loss(maml, meta, *tensors, steps=3, task_map="sequential").loss  # noqa: E731
    assert directional_check(loss_fn, list(maml.parameters()), directions=2) < 1e-6
    torch_loss, torch_grads = torch_meta(maml, data, 3)
    algorithm = jalg.MAML(MLP(), inner=jax_inner())
    jax_loss, grads = jax_meta(algorithm, algorithm.from_variables(to_flax(net)), data, 3)
    assert abs(float(jax_loss) - torch_loss) <= 1e-12
    assert_close(as_torch_layout(grads["model"]["params"]), torch_grads)
    if name == "clip-in-chain":  # the clip is active: without it the adapted model differs
        unclipped, _ = torch_meta(talg.MAML(net, inner=T.adam(0.05)), data, 3)
        assert abs(unclipped - torch_loss) > 1e-6


def test_torch_metasgd_with_adam_equals_jax():
    net, data = torch_mlp(), batch()
    meta_sgd = talg.MetaSGD(net, lr=0.05, inner=T.adam(1.0))
    torch_loss, torch_grads = torch_meta(meta_sgd, data, 3)
    algorithm = jalg.MetaSGD(MLP(), lr=0.05, inner=optax.adam(1.0, eps_root=EPS_ROOT))
    jax_loss, grads = jax_meta(algorithm, algorithm.from_variables(to_flax(net)), data, 3)
    assert abs(float(jax_loss) - torch_loss) <= 1e-12
    assert_close(as_torch_layout(grads["model"]["params"]) + as_torch_layout(grads["lrs"]), torch_grads)


@pytest.mark.parametrize("name", ["maml", "metasgd", "anil"])
def test_stateful_clone_adapt_equals_the_vmap_path_with_adam(name):
    net, data = torch_mlp(), batch()
    algorithm = {
        "maml": lambda: talg.MAML(net, inner=T.adam(0.05)),
        "metasgd": lambda: talg.MetaSGD(net, lr=0.05, inner=T.adam(1.0)),
        "anil": lambda: talg.ANIL(net[:2], net[2], inner=T.adam(0.05)),
    }[name]()
    loop_loss, loop_grads = torch_meta(algorithm, data, 3, path="loop")
    vmap_loss, vmap_grads = torch_meta(algorithm, data, 3, path="vmap")
    assert abs(loop_loss - vmap_loss) <= 1e-12
    assert_close(vmap_grads, loop_grads)
    # the state lives on the clone, continues across adapt calls, and never on the original
    learner = algorithm.clone()
    x, y = torch.as_tensor(data[0][0]), torch.as_tensor(data[1][0])
    for step in range(1, 3):
        learner.adapt(F.cross_entropy(learner(x), y))
        adam_state = learner.inner_state[0]
        assert int(adam_state.count) == step and adam_state.mu[-1].requires_grad
    assert algorithm.inner_state is None and algorithm.clone().inner_state is None


# -- GBML's rule, and lr versus inner ----------------------------------------------------------


def test_jax_gbml_with_a_complete_optimizer_is_maml():
    """``GBML(model, optax.sgd(lr))`` did gradient ascent (p - lr * (-lr * g)); now the updates of
    a non-learnable transform are added, as for ``MAML(model, inner=...)``."""
    net, data = torch_mlp(), batch()
    variables = to_flax(net)
    x, y = jnp.asarray(data[0][0]), jnp.asarray(data[1][0])

    def adapted(algorithm, steps=3):
        meta = algorithm.from_variables(variables)
        return as_torch_layout(algorithm.adapt(meta, x, y, steps=steps)["params"])

    reference = adapted(jalg.MAML(MLP(), lr=0.4))
    for algorithm in (
        jalg.GBML(MLP(), optax.sgd(0.4)),
        jalg.GBML(MLP(), T.sgd(0.4)),
        jalg.MAML(MLP(), inner=optax.sgd(0.4)),
    ):
        assert "transform" not in algorithm.from_variables(variables)
        assert_close(adapted(algorithm), reference)
    # with Adam the support loss decreases step after step
    gbml = jalg.GBML(MLP(), optax.adam(0.05, eps_root=EPS_ROOT))
    meta = gbml.from_variables(variables)
    losses = [float(jalg.cross_entropy(MLP().apply(gbml.adapt(meta, x, y, steps=k), x), y)) for k in range(4)]
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    # the learnable family keeps learn2learn's p - lr * T(g) (identity transform: MAML)
    assert_close(adapted(jalg.GBML(MLP(), T.elementwise_scale(), lr=0.4)), reference)


def test_torch_gbml_with_a_complete_optimizer_is_maml():
    data = batch()
    reference = torch_meta(talg.MAML(torch_mlp(), lr=0.4), data, 3)
    for algorithm in (talg.GBML(torch_mlp(), T.sgd(0.4)), talg.MAML(torch_mlp(), inner=T.sgd(0.4))):
        loss, grads = torch_meta(algorithm, data, 3)
        assert abs(loss - reference[0]) <= 1e-12
        assert_close(grads, reference[1])
    scaled = talg.GBML(torch_mlp(), l2l.optim.ModuleTransform(l2l.nn.Scale), lr=0.4)  # identity at init
    assert abs(torch_meta(scaled, data, 3)[0] - reference[0]) <= 1e-12


def test_gbml_preconditioner_with_an_inner_optimizer_matches_across_backends():
    net, data = torch_mlp(), batch()
    gbml = talg.GBML(net, l2l.optim.ModuleTransform(l2l.nn.Scale), inner=T.adam(0.05))
    torch_loss, _ = torch_meta(gbml, data, 3)
    algorithm = jalg.GBML(MLP(), T.elementwise_scale(), inner=optax.adam(0.05, eps_root=EPS_ROOT))
    jax_loss, _ = jax_meta(algorithm, algorithm.from_variables(to_flax(net)), data, 3)
    assert abs(float(jax_loss) - torch_loss) <= 1e-12


def _refusals(backend):
    if backend == "torch":
        model, scale = torch.nn.Linear(4, 3), l2l.optim.ModuleTransform(l2l.nn.Scale)
        algorithms, complete = talg, T.sgd(0.1)
    else:
        model, scale = nn.Dense(3), T.elementwise_scale()
        algorithms, complete = jalg, optax.sgd(0.1)
    return [
        (
            lambda: algorithms.MAML(model, lr=0.1, inner=complete),
            ValueError,
            r"MAML got both lr=0.1 and inner=",
        ),
        (lambda: algorithms.MAML(model), TypeError, r"MAML: lr=None must be a float >= 0, or pass inner="),
        (
            lambda: algorithms.MAML(model, inner="adam"),
            TypeError,
            r"inner='adam' must be a GradientTransformation",
        ),
        (
            lambda: algorithms.MAML(model, inner=T.kronecker()),
            TypeError,
            r"inner is a LearnableTransformation",
        ),
        (lambda: algorithms.ANIL(model, model, lr=0.1, inner=complete), ValueError, r"ANIL got both lr=0.1"),
        (
            lambda: algorithms.GBML(model, complete, lr=0.1),
            ValueError,
            r"complete optimizer .* refuses lr=0.1",
        ),
        (
            lambda: algorithms.GBML(model, complete, adapt_transform=True),
            ValueError,
            r"refuses adapt_transform",
        ),
        (lambda: algorithms.GBML(model, scale, lr=0.1, inner=complete), ValueError, r"GBML got both lr=0.1"),
        (
            lambda: algorithms.GBML(model, scale, adapt_transform=True, inner=complete),
            ValueError,
            r"adapt_transform=True takes the default SGD inner step",
        ),
    ]


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_lr_and_inner_refusals(backend):
    for call, exception, match in _refusals(backend):
        with pytest.raises(exception, match=match):
            call()
    if backend == "torch":
        # a core learnable pair is accepted by torch GBML (issue 13 item 4): at initialisation
        # elementwise_scale is the identity, so one GBML step equals one MAML step at the same lr
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 3).double()
        x, y = torch.randn(6, 4, dtype=torch.float64), torch.arange(6) % 3
        gbml = talg.GBML(model, T.elementwise_scale(), lr=0.3).clone()
        maml = talg.MAML(model, lr=0.3).clone()
        for learner in (gbml, maml):
            learner.adapt(torch.nn.functional.cross_entropy(learner(x), y))
        torch.testing.assert_close(gbml.module.weight, maml.module.weight, rtol=0, atol=1e-12)


def test_metalearner_inner_option_is_checked():
    with pytest.raises(
        ValueError, match=r"inner='adam' applies to maml, metasgd, anil, reptile; algorithm='protonet'"
    ):
        l2l.MetaLearner("protonet", "omniglot-fc", 3, inner="adam", backend="torch")
    with pytest.raises(ValueError, match=r"inner='rmsprop' is not one of 'sgd', 'momentum', 'adam'"):
        l2l.MetaLearner("maml", "omniglot-fc", 3, inner="rmsprop", backend="jax")
    learner = l2l.MetaLearner("metasgd", "omniglot-fc", 3, lr=0.1, inner="momentum", backend="torch")
    trace_state, _ = learner.algorithm.inner.init([torch.ones(1)])  # sgd(1.0, momentum=0.9)
    assert isinstance(trace_state, T.TraceState)
