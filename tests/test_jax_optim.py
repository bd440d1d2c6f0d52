"""The jax ``l2l.optim.LearnableOptimizer`` / ``ParameterUpdate`` / ``DifferentiableSGD`` against torch.

Both backends start from the same weights, see the same batches and run the same meta-descent
loop (torch: ``loss.backward(); meta_opt.step(); opt.step()``; jax: ``meta_gradients`` then the
meta-optimizer then ``step``); parameters, transform parameters and hypergradients must agree in
float64 to rounding. The model has a conv kernel, so the three-mode Meta-Curvature path is used.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from l2l_multi.backends.jax import optim as jax_optim  # noqa: E402
from l2l_multi.backends.torch import nn as torch_nn  # noqa: E402
from l2l_multi.backends.torch import optim as torch_optim  # noqa: E402

import l2l_multi as l2l  # noqa: E402

STEPS, LR, META_LR = 4, 0.3, 0.05


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def _torch_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(8, 3)
    ).double()


def _jax_loss(params, x, y):
    """The torch model's forward in jax, on torch-layout weights (OIHW conv, [out, in] linear)."""
    h = jax.lax.conv_general_dilated(
        x, params["0.weight"], (1, 1), "VALID", dimension_numbers=("NCHW", "OIHW", "NCHW")
    )
    h = jnp.tanh(h + params["0.bias"][None, :, None, None]).reshape(x.shape[0], -1)
    logits = h @ params["3.weight"].T + params["3.bias"]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


def _batches(seed=1):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(5, 1, 4, 4)), rng.integers(0, 3, size=5)) for _ in range(STEPS + 1)]


# (id, torch factory, jax transform): the same rule on both backends
TRANSFORMS = [
    ("scale", lambda: torch_optim.ModuleTransform(torch_nn.Scale), lambda: jax_optim.elementwise_scale(1.0)),
    (
        "kronecker",
        lambda: torch_optim.KroneckerTransform(torch_nn.KroneckerLinear),
        lambda: jax_optim.kronecker(psd=True, layout="torch"),
    ),
    (
        "meta-curvature",
        lambda: torch_optim.MetaCurvatureTransform,
        lambda: jax_optim.meta_curvature(layout="torch"),
    ),
]


def _run_torch(factory, batches):
    model = _torch_model()
    opt = torch_optim.LearnableOptimizer(model, factory(), lr=LR)
    # Perturb the transforms off the identity so the comparison sees every factor at work.
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in opt.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    initial_transform = [p.detach().clone() for p in opt.parameters()]
    meta_opt = torch.optim.SGD(opt.parameters(), lr=META_LR)
    history = []
    for x, y in batches:
        opt.zero_grad()
        meta_opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        hypergradient = [None if p.grad is None else p.grad.clone() for p in opt.parameters()]
        meta_opt.step()
        opt.step()
        history.append(
            {
                "loss": loss.item(),
                "hypergradient": hypergradient,
                "params": {n: p.detach().clone() for n, p in model.named_parameters()},
            }
        )
    return model, opt, initial_transform, history


def _transform_tree_from_torch(transform_params, opt, tensors):
    """Fill the jax transform tree (same structure as ``transform_params``) with torch's values.

    Both sides hold one group of factors per model parameter, in ``named_parameters`` order, and
    within a group the same factors in the same order (left/right, mode matrices, scale).
    """
    values = iter(t.detach().numpy() for t in tensors)
    names = list(opt.model.state_dict().keys())
    leaves = {}
    for name in names:
        group = transform_params[name]
        flat, structure = jax.tree_util.tree_flatten(group)
        # dict groups flatten in sorted key order: kronecker's {"left", "right"} matches torch's order
        leaves[name] = jax.tree_util.tree_unflatten(
            structure, [jnp.asarray(next(values).reshape(leaf.shape)) for leaf in flat]
        )
    assert next(values, None) is None
    return leaves


def _leaves(tree):
    return jax.tree_util.tree_leaves(tree)


def _assert_params(params, torch_params):
    for key, value in torch_params.items():
        np.testing.assert_allclose(params[key], value.numpy(), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name, torch_factory, jax_transform", TRANSFORMS, ids=[t[0] for t in TRANSFORMS])
def test_meta_descent_matches_torch(name, torch_factory, jax_transform):
    batches = _batches()
    torch_model, torch_opt, initial_transform, torch_history = _run_torch(torch_factory, batches)
    start = _torch_model()
    params = {n: jnp.asarray(p.detach().numpy()) for n, p in start.named_parameters()}
    with l2l.use_backend("jax"):
        opt = l2l.optim.LearnableOptimizer(jax_transform(), lr=LR)
    assert isinstance(opt, jax_optim.LearnableOptimizer)
    transform_params = _transform_tree_from_torch(opt.init(params), torch_opt, initial_transform)
    meta_sgd = jax_optim.sgd(META_LR)
    meta_state = meta_sgd.init(transform_params)
    meta_step = jax.jit(lambda tp, before, g, x, y: opt.meta_gradients(tp, before, g, _jax_loss, x, y))

    x, y = (jnp.asarray(a) for a in batches[0])
    loss, grads = jax.value_and_grad(_jax_loss)(params, x, y)
    np.testing.assert_allclose(loss, torch_history[0]["loss"], rtol=1e-12)
    # torch's record k holds the parameters after its step k, which the jax loop takes at the end
    # of iteration k: opt.step is only called here to compare them
    _assert_params(opt.step(transform_params, params, grads), torch_history[0]["params"])
    for record, (x, y) in zip(torch_history[1:], batches[1:]):
        result = meta_step(transform_params, params, grads, jnp.asarray(x), jnp.asarray(y))
        np.testing.assert_allclose(result.loss, record["loss"], rtol=1e-12)
        expected = _transform_tree_from_torch(transform_params, torch_opt, record["hypergradient"])
        for got, want in zip(_leaves(result.transform_grads), _leaves(expected)):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-13)
        updates, meta_state = meta_sgd.update(result.transform_grads, meta_state)
        transform_params = jax_optim.apply_updates(transform_params, updates)
        params, grads = result.params, result.grads
        _assert_params(opt.step(transform_params, params, grads), record["params"])
    final = _transform_tree_from_torch(transform_params, torch_opt, list(torch_opt.parameters()))
    for got, want in zip(_leaves(transform_params), _leaves(final)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
    assert any(float(jnp.abs(g).max()) > 1e-6 for g in _leaves(result.transform_grads))


def test_hypergradient_is_the_finite_difference_of_the_next_loss():
    """Independent of torch: d/d scales of L(p - lr * s * g) by central differences."""
    params = {n: jnp.asarray(p.detach().numpy()) for n, p in _torch_model().named_parameters()}
    (x0, y0), (x1, y1) = ((jnp.asarray(a) for a in batch) for batch in _batches()[:2])
    opt = jax_optim.LearnableOptimizer(jax_optim.elementwise_scale(1.0), lr=LR)
    scales = opt.init(params)
    grads = jax.grad(_jax_loss)(params, x0, y0)
    result = opt.meta_gradients(scales, params, grads, _jax_loss, x1, y1)
    eps = 1e-6
    for key in ("0.weight", "3.bias"):
        index = (0,) * scales[key].ndim
        bumped = [{**scales, key: scales[key].at[index].add(sign * eps)} for sign in (1.0, -1.0)]
        up, down = (_jax_loss(opt.step(s, params, grads), x1, y1) for s in bumped)
        np.testing.assert_allclose(result.transform_grads[key][index], (up - down) / (2 * eps), rtol=1e-6)
    # grads: the gradient at the new parameters
    reference = jax.grad(_jax_loss)(opt.step(scales, params, grads), x1, y1)
    for key in params:
        np.testing.assert_allclose(result.grads[key], reference[key], rtol=1e-12, atol=1e-15)


def test_parameter_update_and_differentiable_sgd_match_torch():
    torch_model = _torch_model()
    x, y = _batches()[0]
    torch_update = torch_optim.ParameterUpdate(
        torch_model.named_parameters(), torch_optim.KroneckerTransform(torch_nn.KroneckerLinear)
    )
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in torch_update.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    loss = torch.nn.functional.cross_entropy(torch_model(torch.from_numpy(x)), torch.from_numpy(y))
    torch_updates = torch_update(loss, torch_model.parameters())
    torch_sgd_model = _torch_model()
    torch_optim.DifferentiableSGD(LR)(torch_sgd_model, [u.detach() for u in torch_updates])

    params = {n: jnp.asarray(p.detach().numpy()) for n, p in torch_model.named_parameters()}
    update = jax_optim.ParameterUpdate(jax_optim.kronecker(psd=True, layout="torch"))
    transform_params = update.init(params)
    flat, structure = jax.tree_util.tree_flatten(transform_params)
    # jax flattens dicts in sorted key order; torch's ModuleList follows named_parameters order
    order = sorted(range(len(params)), key=lambda i: list(params)[i])
    torch_factors = [p.detach().numpy() for p in torch_update.parameters()]
    by_parameter = [torch_factors[2 * i : 2 * i + 2] for i in range(len(params))]
    transform_params = jax.tree_util.tree_unflatten(
        structure, [jnp.asarray(f) for i in order for f in by_parameter[i]]
    )
    jax_updates = update(transform_params, _jax_loss, params, jnp.asarray(x), jnp.asarray(y))
    for (key, value), want in zip(params.items(), torch_updates):
        assert jax_updates[key].shape == value.shape
        np.testing.assert_allclose(jax_updates[key], want.detach().numpy(), rtol=1e-12, atol=1e-15)
    stepped = jax_optim.DifferentiableSGD(LR)(params, jax_updates)
    for key, p in torch_sgd_model.named_parameters():
        np.testing.assert_allclose(stepped[key], p.detach().numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "call, exception, match",
    [
        (
            lambda: jax_optim.LearnableOptimizer(jax_optim.adam(1e-3)),
            TypeError,
            r"learnable transform.*inner=",
        ),
        (
            lambda: jax_optim.LearnableOptimizer(torch_optim.ModuleTransform(torch_nn.Scale)),
            TypeError,
            r"ModuleTransform.*torch modules",
        ),
        (
            lambda: jax_optim.LearnableOptimizer(jax_optim.elementwise_scale(), lr=-1.0),
            ValueError,
            r"lr=-1.0",
        ),
        (lambda: jax_optim.ParameterUpdate("scale"), TypeError, r"ParameterUpdate\(transform=.*str"),
        (lambda: jax_optim.DifferentiableSGD(float("nan")), ValueError, r"lr=nan"),
    ],
    ids=["complete-optimizer", "torch-factory", "negative-lr", "string", "nan-lr"],
)
def test_refusals(call, exception, match):
    with pytest.raises(exception, match=match):
        call()
