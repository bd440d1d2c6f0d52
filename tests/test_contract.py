"""The functional contract (``l2l_multi._contract``) on both backends: one signature per shared
name, one return type, numpy accepted on both; the torch functional core against the stateful
clone/adapt shell, ``torch.func.grad`` against ``.backward()``, GBML and Reptile vmapped against
the loop, and the torch learnable-transform modules against the core pairs (float64)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from l2l_multi.backends.torch import algorithms as talg  # noqa: E402
from l2l_multi.backends.torch import nn as tnn  # noqa: E402
from l2l_multi.backends.torch import optim as toptim  # noqa: E402

from l2l_multi import transforms  # noqa: E402
from l2l_multi._contract import MetaBatchLoss  # noqa: E402

F = torch.nn.functional
DOUBLE = torch.float64
SHARED_METHODS = ("adapt", "task_loss", "init", "from_variables")
LEARNERS = ("MAML", "MetaSGD", "ANIL", "GBML", "Reptile")


def _shape(signature: inspect.Signature) -> list[tuple]:
    """Names, kinds and defaults (annotations differ in spelling between the backends)."""
    return [(p.name, p.kind, p.default) for p in signature.parameters.values()]


def _mlp(seed=0, batch_norm=False):
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(5, 8)] + ([torch.nn.BatchNorm1d(8)] if batch_norm else [])
    return torch.nn.Sequential(*layers, torch.nn.Tanh(), torch.nn.Linear(8, 3)).to(DOUBLE)


def _batch(tasks=3, seed=1):
    generator = torch.Generator().manual_seed(seed)
    sx = torch.randn(tasks, 6, 5, generator=generator, dtype=DOUBLE)
    qx = torch.randn(tasks, 9, 5, generator=generator, dtype=DOUBLE)
    return sx, torch.arange(3).repeat(tasks, 2), qx, torch.arange(3).repeat(tasks, 3)


def _perturbed(module, seed=2, scale=0.1):
    """Move every parameter off its identity initialisation, so the tests see non-trivial maps."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(scale * torch.randn(param.shape, generator=generator, dtype=param.dtype))
    return module


LEARNER_FACTORIES = {
    "maml": lambda: talg.MAML(_mlp(batch_norm=True), lr=0.3),
    "maml-first-order": lambda: talg.MAML(_mlp(), lr=0.3, first_order=True),
    "maml-momentum": lambda: talg.MAML(_mlp(), inner=transforms.sgd(0.2, momentum=0.9)),
    "metasgd": lambda: talg.MetaSGD(_perturbed(_mlp()), lr=0.3),
    "anil": lambda: talg.ANIL(torch.nn.Linear(5, 8).to(DOUBLE), torch.nn.Linear(8, 3).to(DOUBLE), lr=0.3),
    "gbml-kronecker": lambda: _perturbed(
        talg.GBML(_mlp(), toptim.KroneckerTransform(tnn.KroneckerLinear), lr=0.3)
    ),
    "gbml-core-pair": lambda: _perturbed(talg.GBML(_mlp(), transforms.meta_curvature(), lr=0.3)),
    "reptile": lambda: talg.Reptile(_mlp(), lr=0.3),
}


# -- one signature, one return type ------------------------------------------------------------


def test_signatures_match_across_backends():
    jalg = pytest.importorskip("l2l_multi.backends.jax.algorithms")
    assert _shape(inspect.signature(talg.meta_batch_loss)) == _shape(inspect.signature(jalg.meta_batch_loss))
    assert talg.meta_batch_loss.__name__ == jalg.meta_batch_loss.__name__ == "meta_batch_loss"
    for name in LEARNERS:
        for method in SHARED_METHODS:
            torch_side = inspect.signature(getattr(getattr(talg, name), method))
            jax_side = inspect.signature(getattr(getattr(jalg, name), method))
            assert _shape(torch_side) == _shape(jax_side), f"{name}.{method}"
    for name in ("ProtoNet", "MetaOptNet"):
        for method in ("task_loss", "init", "from_variables"):
            torch_side = inspect.signature(getattr(getattr(talg, name), method))
            jax_side = inspect.signature(getattr(getattr(jalg, name), method))
            assert _shape(torch_side) == _shape(jax_side), f"{name}.{method}"
    assert talg.MetaBatchResult is MetaBatchLoss  # the old torch name keeps importing
    assert not hasattr(talg, "shard_tasks") and not hasattr(jalg, "shard_tasks")
    assert callable(talg.task_slice) and callable(jalg.shard_task_batch)


def test_same_return_type_and_numpy_accepted_on_both_backends():
    jax = pytest.importorskip("jax")
    nn = pytest.importorskip("flax.linen")
    jalg = pytest.importorskip("l2l_multi.backends.jax.algorithms")
    arrays = [a.numpy() for a in _batch()]
    arrays = [a.astype(np.float32) if a.dtype == np.float64 else a for a in arrays]

    maml = talg.MAML(_mlp().float(), lr=0.3)
    from_numpy = talg.meta_batch_loss(maml, maml.meta_parameters(), *arrays)
    from_tensors = talg.meta_batch_loss(maml, maml.meta_parameters(), *(torch.from_numpy(a) for a in arrays))
    assert type(from_numpy) is MetaBatchLoss
    assert from_numpy.loss.item() == from_tensors.loss.item()
    assert tuple(from_numpy.query_logits.shape) == (3, 9, 3) and tuple(from_numpy.task_losses.shape) == (3,)

    jmaml = jalg.MAML(nn.Dense(3), lr=0.3)
    meta = jmaml.init(jax.random.PRNGKey(0), arrays[0][0])
    result = jalg.meta_batch_loss(jmaml, meta, *arrays)
    assert type(result) is MetaBatchLoss
    assert result.query_logits.shape == (3, 9, 3) and result.task_losses.shape == (3,)
    as_jax = jalg.meta_batch_loss(jmaml, meta, *(jax.numpy.asarray(a) for a in arrays))
    assert float(result.loss) == float(as_jax.loss)

    # the other framework's arrays are refused naming the conversion function
    with pytest.raises(TypeError, match=r"support_x is a jax array; .* l2l_multi.interop.to_torch"):
        talg.meta_batch_loss(maml, maml.meta_parameters(), jax.numpy.asarray(arrays[0]), *arrays[1:])
    with pytest.raises(TypeError, match=r"query_y is a torch.Tensor; .* l2l_multi.interop.to_jax"):
        jalg.meta_batch_loss(jmaml, meta, *arrays[:3], torch.from_numpy(arrays[3]))
    # the old torch call form shows the new call, on both backends
    for backend, algorithm in ((talg, maml), (jalg, jmaml)):
        with pytest.raises(TypeError, match=r"the call is meta_batch_loss\(algorithm, meta_params, "):
            backend.meta_batch_loss(algorithm, *arrays)


# -- the torch functional core against the stateful shell -----------------------------------------


@pytest.mark.parametrize("name", list(LEARNER_FACTORIES))
def test_functional_adapt_equals_clone_adapt(name):
    algorithm = LEARNER_FACTORIES[name]()
    sx, sy, _, _ = _batch()
    before = {key: value.detach().clone() for key, value in algorithm.state_dict().items()}
    learner = algorithm.clone()
    for _ in range(3):
        learner.adapt(F.cross_entropy(learner(sx[0]), sy[0]))
    adapted = algorithm.adapt(algorithm.meta_parameters(), sx[0], sy[0], steps=3)
    expected = dict(learner.module.named_parameters())
    assert set(adapted) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(adapted[key], value, rtol=0, atol=1e-12)
    for key, value in algorithm.state_dict().items():  # the functional call changed nothing
        assert torch.equal(value, before[key]), key


def test_adapt_call_forms():
    maml = LEARNER_FACTORIES["maml"]()
    sx, sy, _, _ = _batch()
    with pytest.raises(TypeError, match=r"MAML.adapt got str as its first argument. The call forms are"):
        maml.adapt("loss")
    with pytest.raises(TypeError, match=r"MAML.adapt: too many positional arguments. The call forms are"):
        maml.adapt(maml.meta_parameters(), sx[0], sy[0], 3)  # steps is keyword-only
    # numpy inputs, as everywhere a batch is taken
    from_numpy = maml.adapt(maml.meta_parameters(), sx[0].numpy(), sy[0].numpy(), steps=2)
    value, _ = maml.task_loss(maml.meta_parameters(), *(a[0].numpy() for a in _batch()), steps=2)
    expected, _ = maml.task_loss(maml.meta_parameters(), *(a[0] for a in _batch()), steps=2)
    assert value.item() == expected.item()
    with pytest.raises(TypeError, match=r"x must be a torch or numpy array, got list"):
        maml.adapt(maml.meta_parameters(), sx[0].tolist(), sy[0], steps=2)
    # a per-call inner optimizer: sgd(lr) is the learner's own step
    plain = maml.adapt(maml.meta_parameters(), sx[0], sy[0], steps=2)
    again = maml.adapt(maml.meta_parameters(), sx[0], sy[0], steps=2, inner=transforms.sgd(0.3))
    for key in plain:
        torch.testing.assert_close(plain[key], again[key], rtol=0, atol=1e-14)
        torch.testing.assert_close(plain[key], from_numpy[key], rtol=0, atol=0)
    faster = maml.adapt(maml.meta_parameters(), sx[0], sy[0], steps=2, inner=transforms.sgd(0.6))
    assert any(not torch.allclose(plain[key], faster[key]) for key in plain)


@pytest.mark.parametrize(
    "name", ["maml", "maml-momentum", "metasgd", "anil", "gbml-kronecker", "gbml-core-pair"]
)
def test_torch_func_grad_equals_backward(name):
    algorithm = LEARNER_FACTORIES[name]()
    batch = _batch()
    algorithm.zero_grad()
    talg.meta_batch_loss(algorithm, algorithm.meta_parameters(), *batch, steps=2).loss.backward()
    detached = {
        key: {n: t.detach().clone() for n, t in tree.items()}
        for key, tree in algorithm.meta_parameters().items()
    }
    for task_map in ("sequential", "vmap"):

        def loss(meta, task_map=task_map):
            return talg.meta_batch_loss(algorithm, meta, *batch, steps=2, task_map=task_map).loss

        grads = torch.func.grad(loss)(detached)
        for key, tree in algorithm.meta_parameters().items():
            for leaf, param in tree.items():
                torch.testing.assert_close(grads[key][leaf], param.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["gbml-kronecker", "gbml-core-pair", "reptile"])
def test_gbml_and_reptile_vmapped_equal_the_loop(name):
    algorithm = LEARNER_FACTORIES[name]()
    batch = _batch()
    results = {}
    for task_map in ("sequential", "vmap"):
        algorithm.zero_grad()
        meta = algorithm.meta_parameters()
        result = talg.meta_batch_loss(algorithm, meta, *batch, steps=2, task_map=task_map)
        if result.loss.requires_grad:
            result.loss.backward()
        grads = [None if p.grad is None else p.grad.clone() for p in algorithm.parameters()]
        results[task_map] = (result, grads)
    loop, vmapped = results["sequential"], results["vmap"]
    torch.testing.assert_close(vmapped[0].task_losses, loop[0].task_losses, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(vmapped[0].query_logits, loop[0].query_logits, rtol=1e-12, atol=1e-13)
    for expected, actual in zip(loop[1], vmapped[1]):
        assert (expected is None) == (actual is None)
        if expected is not None:
            torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12)
    if name != "reptile":  # Reptile's meta-update is accumulate(), not the query loss's gradient
        assert any(g is not None and g.abs().max() > 0 for g in loop[1])


def test_task_loss_init_from_variables():
    anil = LEARNER_FACTORIES["anil"]()
    sx, sy, qx, qy = _batch()
    loss, outputs = anil.task_loss(anil.meta_parameters(), sx[0], sy[0], qx[0], qy[0], steps=2)
    batch = talg.meta_batch_loss(anil, anil.meta_parameters(), sx[:1], sy[:1], qx[:1], qy[:1], steps=2)
    torch.testing.assert_close(loss, batch.loss, rtol=0, atol=1e-14)
    torch.testing.assert_close(outputs, batch.query_logits[0], rtol=0, atol=1e-14)

    def copy(tree):  # init returns the live tensors, which the next init overwrites
        return {k: {n: t.detach().clone() for n, t in v.items()} for k, v in tree.items()}

    first, changed = copy(anil.init(7, sx[0])), copy(anil.init(8, sx[0]))
    again = anil.init(7, sx[0])
    for key, tree in first.items():
        for leaf, value in tree.items():
            assert torch.equal(again[key][leaf], value)
            assert not torch.equal(changed[key][leaf], value)
    head = {n: t + 1 for n, t in anil.head.state_dict().items()}
    expected = anil.head.weight.detach() + 1
    loaded = anil.from_variables(anil.features.state_dict(), head)
    torch.testing.assert_close(loaded["model"]["weight"], expected)
    missing = r"head_variables must name the model's parameters: missing \['bias'\]"
    with pytest.raises(ValueError, match=missing):
        anil.from_variables(anil.features.state_dict(), {"weight": anil.head.weight})


@pytest.mark.parametrize("head", ["protonet", "ridge", "svm"])
def test_metric_learners_functional_task_loss(head):
    torch.manual_seed(0)
    features = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.BatchNorm1d(6)).to(DOUBLE)
    if head == "protonet":
        learner = talg.ProtoNet(features)
    else:
        learner = talg.MetaOptNet(features, head=head, **({"ways": 3} if head == "svm" else {}))
    learner.to(DOUBLE)
    sx, sy, qx, qy = (a[0] for a in _batch())
    learner.zero_grad()
    stateful = F.cross_entropy(learner(sx, sy, qx), qy)
    stateful.backward()
    stats = {k: v.clone() for k, v in learner.state_dict().items() if "running" in k}
    meta = learner.meta_parameters()
    value, logits = learner.task_loss(meta, sx, sy, qx, qy)
    torch.testing.assert_close(value, stateful, rtol=1e-12, atol=1e-12)
    assert tuple(logits.shape) == (9, 3)
    expected = {key: {n: t.grad.clone() for n, t in tree.items()} for key, tree in meta.items()}
    if head == "svm":  # the QP solver's autograd.Function has no torch.func support: backward
        learner.zero_grad()
        value.backward()
        grads = {key: {n: t.grad for n, t in tree.items()} for key, tree in meta.items()}
    else:
        detached = {key: {n: t.detach().clone() for n, t in tree.items()} for key, tree in meta.items()}
        grads = torch.func.grad(lambda m: learner.task_loss(m, sx, sy, qx, qy)[0])(detached)
    for key, tree in expected.items():
        for leaf, grad in tree.items():
            torch.testing.assert_close(grads[key][leaf], grad, rtol=1e-8, atol=1e-10)
    for key, value in stats.items():  # the functional calls read, never write, running statistics
        assert torch.equal(learner.state_dict()[key], value)


# -- learnable transforms: the torch modules are the core pairs --------------------------------------


@pytest.mark.parametrize("shape", [(7,), (4, 3), (4, 3, 2, 2)], ids=["vector", "matrix", "conv"])
def test_learnable_modules_equal_the_core_pairs(shape):
    weight = torch.nn.Parameter(torch.zeros(shape, dtype=DOUBLE))
    grad = torch.randn(shape, generator=torch.Generator().manual_seed(3), dtype=DOUBLE)

    curvature = _perturbed(toptim.MetaCurvatureTransform(weight))
    expected = transforms.meta_curvature().update({"w": grad}, {"w": curvature.state()})[0]["w"]
    torch.testing.assert_close(curvature(grad), expected, rtol=0, atol=0)

    kron = _perturbed(toptim.KroneckerTransform(tnn.KroneckerLinear, psd=True)(weight))
    factors = {"left": kron.transform.left, "right": kron.transform.right}
    expected = transforms.kronecker(psd=True).update({"w": grad}, {"w": factors})[0]["w"]
    torch.testing.assert_close(kron(grad), expected, rtol=1e-14, atol=1e-14)

    scale = _perturbed(toptim.ModuleTransform(tnn.Scale)(weight))
    expected = transforms.elementwise_scale().update({"w": grad}, {"w": scale.alpha})[0]["w"]
    torch.testing.assert_close(scale(grad), expected, rtol=0, atol=0)

    for pair in (transforms.kronecker(), transforms.meta_curvature(), transforms.elementwise_scale(0.5)):
        holder = _perturbed(toptim.LearnableTransformModule(pair, weight))
        expected = pair.update({"w": grad}, {"w": holder.state()})[0]["w"]
        torch.testing.assert_close(holder(grad), expected, rtol=0, atol=0)


def test_gbml_takes_a_core_pair_as_the_module_factory_does():
    """GBML(model, transforms.meta_curvature()) adapts exactly as GBML(model, MetaCurvatureTransform)
    when both hold the same transform parameters."""
    sx, sy, _, _ = _batch()
    by_module = talg.GBML(_mlp(), toptim.MetaCurvatureTransform, lr=0.3)
    _perturbed(by_module.compute_update)
    by_pair = talg.GBML(_mlp(), transforms.meta_curvature(), lr=0.3)
    modules = by_module.compute_update.transforms_modules
    holders = by_pair.compute_update.transforms_modules
    with torch.no_grad():
        for module, holder in zip(modules, holders):
            for target, source in zip(holder.factors, module.state()):
                target.copy_(source)
    for algorithm in (by_module, by_pair):
        algorithm.zero_grad()
    adapted = [a.adapt(a.meta_parameters(), sx[0], sy[0], steps=2) for a in (by_module, by_pair)]
    for key in adapted[0]:
        torch.testing.assert_close(adapted[1][key], adapted[0][key], rtol=0, atol=1e-14)
