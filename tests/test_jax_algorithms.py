"""The jax backend's algorithms against the torch backend (an independent implementation whose
meta-gradients are checked against finite differences), float64; the compiled step; sharding."""

import textwrap

import numpy as np
import pytest

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")
nn = pytest.importorskip("flax.linen")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402
from _helpers import run_python  # noqa: E402
from l2l_multi.backends.jax import algorithms as jalg  # noqa: E402

import l2l_multi as l2l  # noqa: E402
from l2l_multi import transforms  # noqa: E402

F = torch.nn.functional


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


class MLP(nn.Module):
    hidden: int = 5
    out: int = 3

    @nn.compact
    def __call__(self, x):
        hidden = jnp.tanh(nn.Dense(self.hidden, name="Dense_0")(x))
        return nn.Dense(self.out, name="Dense_1")(hidden)


def torch_mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()


def to_flax(net):
    """Variables of ``MLP`` holding ``net``'s weights (kernels are transposed torch weights)."""
    layers = [m for m in net if isinstance(m, torch.nn.Linear)]
    params = {
        f"Dense_{i}": {
            "kernel": jnp.asarray(m.weight.detach().numpy().T),
            "bias": jnp.asarray(m.bias.detach().numpy()),
        }
        for i, m in enumerate(layers)
    }
    return {"params": params}


def torch_grads_as_flax(tensors):
    """[w0, b0, w1, b1] torch gradients -> the flax tree layout."""
    w0, b0, w1, b1 = [t.detach().numpy() for t in tensors]
    return {"Dense_0": {"kernel": w0.T, "bias": b0}, "Dense_1": {"kernel": w1.T, "bias": b1}}


def batch(tasks=4, seed=1):
    rng = np.random.default_rng(seed)
    sx, qx = rng.normal(size=(tasks, 6, 4)), rng.normal(size=(tasks, 9, 4))
    sy, qy = np.tile(np.arange(3), (tasks, 2)), np.tile(np.arange(3), (tasks, 3))
    return sx, sy, qx, qy


def torch_meta_step(algorithm, data, steps):
    algorithm.zero_grad()
    result = l2l.algorithms.meta_batch_loss(
        algorithm,
        algorithm.meta_parameters(),
        *(torch.as_tensor(a) for a in data),
        steps=steps,
        task_map="sequential",
    )
    result.loss.backward()
    return result.loss.item()


def jax_meta_step(algorithm, meta, data, steps):
    def loss(meta):
        return jalg.meta_batch_loss(algorithm, meta, *(jnp.asarray(a) for a in data), adaptation_steps=steps)[
            0
        ]

    return jax.jit(jax.value_and_grad(loss))(meta)


def assert_trees_close(actual, expected, rtol=1e-9):
    flat_a, flat_e = jax.tree_util.tree_leaves(actual), jax.tree_util.tree_leaves(expected)
    assert len(flat_a) == len(flat_e)
    scale = max(float(np.abs(np.asarray(e)).max()) for e in flat_e)
    worst = max(float(np.abs(np.asarray(a) - np.asarray(e)).max()) for a, e in zip(flat_a, flat_e))
    assert worst <= rtol * scale, f"max difference {worst:.3e} relative to {scale:.3e}"


@pytest.mark.parametrize("first_order", [False, True], ids=["second-order", "first-order"])
@pytest.mark.parametrize("steps", [1, 3], ids=["1-step", "3-steps"])
def test_maml_matches_torch(steps, first_order):
    net = torch_mlp()
    data = batch()
    torch_loss = torch_meta_step(l2l.algorithms.MAML(net, lr=0.5, first_order=first_order), data, steps)
    maml = jalg.MAML(MLP(), lr=0.5, first_order=first_order)
    loss, grads = jax_meta_step(maml, maml.from_variables(to_flax(net)), data, steps)
    assert abs(float(loss) - torch_loss) <= 1e-12
    assert_trees_close(grads["model"]["params"], torch_grads_as_flax([p.grad for p in net.parameters()]))


def test_metasgd_matches_torch():
    net = torch_mlp()
    meta_sgd = l2l.algorithms.MetaSGD(net, lr=0.3)
    with torch.no_grad():
        for rate in meta_sgd.lrs:
            rate.uniform_(0.1, 0.5)
    data = batch()
    torch_loss = torch_meta_step(meta_sgd, data, 2)
    algorithm = jalg.MetaSGD(MLP(), lr=0.3)
    meta = algorithm.from_variables(to_flax(net))
    meta["lrs"] = torch_grads_as_flax(list(meta_sgd.lrs))
    loss, grads = jax_meta_step(algorithm, meta, data, 2)
    assert abs(float(loss) - torch_loss) <= 1e-12
    assert_trees_close(grads["model"]["params"], torch_grads_as_flax([p.grad for p in net.parameters()]))
    assert_trees_close(grads["lrs"], torch_grads_as_flax([r.grad for r in meta_sgd.lrs]))


def test_anil_matches_torch():
    net = torch_mlp()
    features, head = net[:2], net[2]
    anil = l2l.algorithms.ANIL(features, head, lr=0.5)
    data = batch()
    torch_loss = torch_meta_step(anil, data, 2)

    class Features(nn.Module):
        @nn.compact
        def __call__(self, x):
            return jnp.tanh(nn.Dense(5)(x))

    flax_vars = to_flax(net)["params"]
    algorithm = jalg.ANIL(Features(), nn.Dense(3), lr=0.5)
    meta = algorithm.from_variables(
        {"params": {"Dense_0": flax_vars["Dense_0"]}}, {"params": flax_vars["Dense_1"]}
    )
    loss, grads = jax_meta_step(algorithm, meta, data, 2)
    assert abs(float(loss) - torch_loss) <= 1e-12
    expected = torch_grads_as_flax([p.grad for p in net.parameters()])
    assert_trees_close(grads["features"]["params"]["Dense_0"], expected["Dense_0"])
    assert_trees_close(grads["model"]["params"], expected["Dense_1"])


def _perturb(rng, tree):
    return jax.tree_util.tree_map(lambda a: a + 0.05 * rng.normal(size=a.shape), tree)


@pytest.mark.parametrize("adapt_transform", [False, True], ids=["fixed-transform", "adapt-transform"])
@pytest.mark.parametrize("kind", ["kronecker", "meta-curvature", "scale"])
def test_gbml_matches_torch(kind, adapt_transform):
    net = torch_mlp()
    torch_transform, jax_transform = {
        "kronecker": (
            l2l.optim.KroneckerTransform(l2l.nn.KroneckerLinear),
            transforms.kronecker(layout="flax"),
        ),
        "meta-curvature": (l2l.optim.MetaCurvatureTransform, transforms.meta_curvature(layout="flax")),
        "scale": (l2l.optim.ModuleTransform(l2l.nn.Scale), transforms.elementwise_scale()),
    }[kind]
    gbml = l2l.algorithms.GBML(net, torch_transform, lr=0.3, adapt_transform=adapt_transform)
    algorithm = jalg.GBML(MLP(), jax_transform, lr=0.3, adapt_transform=adapt_transform)
    meta = algorithm.from_variables(to_flax(net))
    # perturb the transforms off identity identically on both sides
    rng = np.random.default_rng(3)
    meta["transform"] = _perturb(rng, meta["transform"])
    flat_jax = [
        meta["transform"][layer][name] for layer in ("Dense_0", "Dense_1") for name in ("kernel", "bias")
    ]
    for module, factors in zip(gbml.compute_update.transforms_modules, flat_jax):
        with torch.no_grad():
            if kind == "kronecker":
                module.transform.left.copy_(torch.as_tensor(np.array(factors["left"])))
                module.transform.right.copy_(torch.as_tensor(np.array(factors["right"])))
            elif kind == "meta-curvature":
                targets = list(module.mode_matrices) if hasattr(module, "mode_matrices") else [module.scale]
                for target, value in zip(targets, factors):
                    target.copy_(torch.as_tensor(np.array(value)))
            else:  # Scale's alpha has torch's weight layout: [out, in] = kernel transposed
                module.alpha.copy_(torch.as_tensor(np.asarray(factors).T.copy()))
    data = batch()
    torch_loss = torch_meta_step(gbml, data, 3)
    loss, grads = jax_meta_step(algorithm, meta, data, 3)
    assert abs(float(loss) - torch_loss) <= 1e-12
    assert_trees_close(grads["model"]["params"], torch_grads_as_flax([p.grad for p in net.parameters()]))
    torch_transform_grads = [p.grad.numpy() for p in gbml.compute_update.parameters()]
    jax_transform_grads = [
        np.asarray(g)
        for g in jax.tree_util.tree_leaves(
            [
                grads["transform"][layer][name]
                for layer in ("Dense_0", "Dense_1")
                for name in ("kernel", "bias")
            ]
        )
    ]
    if kind == "scale":  # Scale's alpha is laid out like torch's weight: transpose the kernels
        jax_transform_grads = [g.T if g.ndim == 2 else g for g in jax_transform_grads]
    assert_trees_close(jax_transform_grads, torch_transform_grads)


def test_maml_matches_finite_differences():
    maml = jalg.MAML(MLP(), lr=0.5)
    meta = maml.init(jax.random.PRNGKey(0), jnp.ones((1, 4)))
    meta = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), meta)  # flax initialises float32
    data = tuple(jnp.asarray(a) for a in batch())
    loss = lambda m: jalg.meta_batch_loss(maml, m, *data, adaptation_steps=2)[0]
    grads = jax.grad(loss)(meta)
    leaves, tree = jax.tree_util.tree_flatten(meta)
    rng = np.random.default_rng(0)
    direction = [rng.normal(size=leaf.shape) for leaf in leaves]
    shift = lambda eps: jax.tree_util.tree_unflatten(tree, [a + eps * d for a, d in zip(leaves, direction)])
    numeric = (loss(shift(1e-6)) - loss(shift(-1e-6))) / 2e-6
    analytic = sum(float((g * d).sum()) for g, d in zip(jax.tree_util.tree_leaves(grads), direction))
    assert abs(numeric - analytic) <= 1e-7 * abs(numeric)


def test_reptile_matches_torch():
    net = torch_mlp()
    reptile = l2l.algorithms.Reptile(net, lr=0.1)
    data = batch()
    sx, sy = torch.as_tensor(data[0]), torch.as_tensor(data[1])
    for task in range(len(sx)):
        learner = reptile.clone()
        for _ in range(3):
            learner.adapt(F.cross_entropy(learner(sx[task]), sy[task]))
        reptile.accumulate(learner, weight=1 / len(sx))
    algorithm = jalg.Reptile(MLP(), lr=0.1)
    meta = algorithm.from_variables(to_flax(net))
    optimizer = optax.sgd(1.0)
    step = jalg.make_meta_train_step(algorithm, optimizer, adaptation_steps=3)
    new_meta, _, _ = step(meta, optimizer.init(meta), *(jnp.asarray(a) for a in data))
    torch.optim.SGD(net.parameters(), lr=1.0).step()
    assert_trees_close(new_meta["model"], to_flax(net))


@pytest.mark.parametrize("kind", ["protonet", "ridge"])
def test_metric_heads_match_torch(kind):
    net = torch_mlp()
    features = net  # embeddings of size 3
    if kind == "protonet":
        torch_algorithm = l2l.algorithms.ProtoNet(features)
        algorithm = jalg.ProtoNet(MLP(), ways=3)
    else:
        torch_algorithm = l2l.algorithms.MetaOptNet(features, head="ridge", reg=0.5)
        algorithm = jalg.MetaOptNet(MLP(), ways=3, head="ridge", reg=0.5)
    sx, sy, qx, qy = (torch.as_tensor(a) for a in batch())
    logits = torch_algorithm(sx, sy, qx)
    loss = F.cross_entropy(logits.reshape(-1, 3), qy.reshape(-1))
    loss.backward()
    meta = algorithm.from_variables(to_flax(net))
    value, grads = jax_meta_step(algorithm, meta, batch(), 0)
    assert abs(float(value) - loss.item()) <= 1e-12
    assert_trees_close(grads["features"]["params"], torch_grads_as_flax([p.grad for p in net.parameters()]))


def test_core_transforms_match_the_torch_modules():
    rng = np.random.default_rng(5)
    weight = torch.nn.Parameter(torch.zeros(4, 3, 2, 2, dtype=torch.float64))
    grad = torch.as_tensor(rng.normal(size=(4, 3, 2, 2)))
    module = l2l.optim.MetaCurvatureTransform(weight)
    core = transforms.meta_curvature(layout="torch")
    state = core.init([grad])
    state = [[torch.as_tensor(rng.normal(size=m.shape)) for m in state[0]]]
    with torch.no_grad():
        for target, value in zip(module.mode_matrices, state[0]):
            target.copy_(value)
    torch.testing.assert_close(core.update([grad], state)[0][0], module(grad))
    # the flax layout of the same conv kernel (HWIO) gives the same map
    flax_core = transforms.meta_curvature(layout="flax")
    hwio = grad.permute(2, 3, 1, 0)
    torch.testing.assert_close(flax_core.update([hwio], state)[0][0].permute(3, 2, 0, 1), module(grad))
    kron = l2l.optim.KroneckerTransform(l2l.nn.KroneckerLinear, psd=True)(weight)
    core_kron = transforms.kronecker(psd=True)
    factors = core_kron.init([grad])
    with torch.no_grad():
        kron.transform.left.add_(0.1)
        kron.transform.right.sub_(0.05)
    factors = [{"left": kron.transform.left.detach(), "right": kron.transform.right.detach()}]
    torch.testing.assert_close(core_kron.update([grad], factors)[0][0], kron(grad))


def test_the_step_is_compiled_once():
    traces = []

    class Counting(nn.Module):
        @nn.compact
        def __call__(self, x):
            traces.append(1)  # Python runs only while jax traces
            return nn.Dense(3)(x)

    maml = jalg.MAML(Counting(), lr=0.5)
    meta = maml.init(jax.random.PRNGKey(0), jnp.ones((1, 4)))
    meta = jax.tree_util.tree_map(jnp.array, meta)  # uncommitted copies, as user code often has
    optimizer = optax.adam(1e-3)
    state = optimizer.init(meta)
    step = jalg.make_meta_train_step(maml, optimizer)
    traces.clear()
    losses = []
    for seed in range(5):
        data = tuple(jnp.asarray(a) for a in batch(seed=seed))
        meta, state, metrics = step(meta, state, *data)
        losses.append(float(metrics.loss))
    assert step.jitted._cache_size() == 1
    after_first = len(traces)
    assert after_first > 0
    for seed in range(5, 8):
        meta, state, metrics = step(meta, state, *(jnp.asarray(a) for a in batch(seed=seed)))
    assert len(traces) == after_first  # no retracing on later steps
    assert len(set(losses)) == 5


def test_step_errors():
    maml = jalg.MAML(MLP(), lr=0.5)
    with pytest.raises(ValueError, match="task_map='pmap' is not one of"):
        jalg.make_meta_train_step(maml, optax.sgd(0.1), task_map="pmap")
    meta = maml.init(jax.random.PRNGKey(0), jnp.ones((1, 4)))
    step = jalg.make_meta_train_step(maml, optax.sgd(0.1))
    sx, sy, qx, qy = (jnp.asarray(a) for a in batch())
    with pytest.raises(ValueError, match=r"query_y must have shape \[B, samples, \.\.\.\] with the same B"):
        step(meta, optax.sgd(0.1).init(meta), sx, sy, qx, qy[:2])
    with pytest.raises(ValueError, match="ways=1 must be an int >= 2"):
        jalg.ProtoNet(MLP(), ways=1)
    with pytest.raises(ValueError, match="head must be one of 'svm', 'ridge', got 'knn'"):
        jalg.MetaOptNet(MLP(), ways=3, head="knn")


@pytest.mark.parametrize("task_map", ["vmap", "sequential", "map"])
def test_task_maps_agree(task_map):
    maml = jalg.MAML(MLP(), lr=0.5)
    meta = maml.init(jax.random.PRNGKey(0), jnp.ones((1, 4)))
    data = tuple(jnp.asarray(a) for a in batch())
    reference = jalg.meta_batch_loss(maml, meta, *data, task_map="vmap").task_losses
    np.testing.assert_allclose(
        jalg.meta_batch_loss(maml, meta, *data, task_map=task_map).task_losses, reference, rtol=1e-12
    )


def test_sharded_step_equals_single_device():
    code = textwrap.dedent(
        """
        import os
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
        import jax, jax.numpy as jnp, numpy as np, optax, flax.linen as nn
        jax.config.update("jax_enable_x64", True)
        from l2l_multi.backends.jax import algorithms as jalg
        assert len(jax.devices()) == 4, jax.devices()
        maml = jalg.MAML(nn.Sequential([nn.Dense(8), jnp.tanh, nn.Dense(3)]), lr=0.5)
        meta = maml.init(jax.random.PRNGKey(0), jnp.ones((1, 4)))
        meta = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), meta)
        rng = np.random.default_rng(0)
        data = (rng.normal(size=(8, 6, 4)), np.tile(np.arange(3), (8, 2)),
                rng.normal(size=(8, 9, 4)), np.tile(np.arange(3), (8, 3)))
        optimizer = optax.adam(1e-2)
        step = jalg.make_meta_train_step(maml, optimizer, adaptation_steps=2)
        single = (meta, optimizer.init(meta))
        sharded = (jalg.replicate(meta), jalg.replicate(optimizer.init(meta)))
        for _ in range(3):
            single = step(*single, *(jnp.asarray(a) for a in data))[:2]
            out = step(*sharded, *jalg.shard_task_batch(tuple(jnp.asarray(a) for a in data)))
            sharded = out[:2]
        devices = {d for leaf in jax.tree_util.tree_leaves(out[2]) for d in leaf.devices()}
        assert len(devices) == 4, devices
        pairs = zip(jax.tree_util.tree_leaves(single[0]), jax.tree_util.tree_leaves(sharded[0]))
        diff = max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in pairs)
        print("max difference", diff)
        assert diff < 1e-12, diff
        """
    )
    result = run_python(code, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "max difference" in result.stdout


def test_transforms_compose_with_optax_and_resolve_per_backend():
    params = {"w": jnp.ones(3)}
    grads = {"w": jnp.array([3.0, 4.0, 0.0])}
    ours_then_optax = optax.chain(transforms.scale(2.0), optax.clip_by_global_norm(1.0))
    updates, _ = ours_then_optax.update(grads, ours_then_optax.init(params), params)
    np.testing.assert_allclose(updates["w"], [0.6, 0.8, 0.0], rtol=1e-6)
    optax_inside_ours = transforms.chain(optax.clip_by_global_norm(1.0), transforms.sgd(0.5))
    updates, _ = optax_inside_ours.update(grads, optax_inside_ours.init(params), params)
    np.testing.assert_allclose(updates["w"], [-0.3, -0.4, 0.0], rtol=1e-6)
    with l2l.use_backend("jax"):
        assert l2l.optim.sgd is transforms.sgd
        assert float(l2l.accuracy(jnp.array([[0.0, 1.0]]), jnp.array([1]))) == 1.0
        with pytest.raises(AttributeError, match="not provided by the 'jax' backend"):
            _ = l2l.clone_module
        assert l2l.algorithms.MAML is jalg.MAML
