"""Reptile as Nichol et al. (2018) train it: an inner optimizer (Adam with beta1 = 0), inner
minibatches (``batch_size`` / ``MetaLearner(inner_batch=)``) and plain meta-steps
(``meta_optimizer="sgd"``), on both backends, against an independent computation."""

from __future__ import annotations

import copy

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("jax")

import jax  # noqa: E402
import torch  # noqa: E402
from _helpers import class_by_class_tasks  # noqa: E402
from l2l_multi.backends.jax.algorithms._reptile import interleaved_order as jax_order  # noqa: E402
from l2l_multi.backends.torch.algorithms._reptile import interleaved_order as torch_order  # noqa: E402

import l2l_multi as l2l  # noqa: E402
from l2l_multi._inner_batches import batch_plan, interleaved_order_numpy  # noqa: E402
from l2l_multi.crosscheck import crosscheck  # noqa: E402


def test_the_interleaved_order_is_the_same_on_numpy_torch_and_jax():
    rng = np.random.default_rng(1)
    for _ in range(5):
        labels = rng.integers(0, 4, size=13)
        expected = interleaved_order_numpy(labels)
        assert torch_order(torch.as_tensor(labels)).tolist() == expected.tolist()
        assert np.asarray(jax_order(jax.numpy.asarray(labels))).tolist() == expected.tolist()
        # each prefix of k * (number of classes) samples holds k of each class, while they last
        counts = np.bincount(labels, minlength=4)
        first = labels[expected[: 4 * counts.min()]]
        assert all(
            (np.bincount(first[i * 4 : i * 4 + 4], minlength=4) == 1).all() for i in range(counts.min())
        )
    # regression targets keep their order
    assert torch_order(torch.zeros(4, 1)).tolist() == [0, 1, 2, 3]


def test_batch_plan_wraps_around_and_needs_no_plan_for_whole_sets():
    assert batch_plan(10, 4, 3).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]]
    assert batch_plan(10, None, 3) is None and batch_plan(10, 10, 3) is None
    with pytest.raises(ValueError, match=r"inner_batch=0 must be None .* or an int >= 1"):
        l2l.MetaLearner("reptile", "omniglot-fc", ways=5, inner_batch=0, backend="torch")


def _by_hand(model, sx, sy, lr, steps, batch_size, b1):
    """The paper's inner loop written with torch.optim.Adam on a copy of ``model`` (float64):
    fresh Adam per task, each step on the next ``batch_size`` samples in interleaved order;
    returns the adapted copies' parameters, one list per task."""
    adapted = []
    for x, y in zip(sx, sy):
        order = interleaved_order_numpy(y)
        plan = batch_plan(len(y), batch_size, steps)
        plan = np.tile(np.arange(len(y)), (steps, 1)) if plan is None else plan
        copy_ = copy.deepcopy(model)
        optimizer = torch.optim.Adam(copy_.parameters(), lr=lr, betas=(b1, 0.999), eps=1e-8)
        for step in range(steps):
            positions = order[plan[step]]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(
                copy_(torch.as_tensor(x[positions])), torch.as_tensor(y[positions])
            )
            loss.backward()
            optimizer.step()
        adapted.append([p.detach().clone() for p in copy_.parameters()])
    return adapted


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_a_meta_step_is_the_papers_interpolation_after_minibatched_adam(backend):
    """MetaLearner("reptile", inner=adam(b1=0), inner_batch=6, meta_optimizer="sgd", meta_lr=eps)
    moves the weights to theta + eps * mean(phi - theta), phi from the hand-written loop."""
    sx, sy, qx, qy = class_by_class_tasks()
    lr, steps, batch, eps, b1 = 1e-2, 4, 6, 0.5, 0.0
    # eps_root 0: torch.optim.Adam (and TensorFlow's, the paper's) adds eps outside the root only
    inner = l2l.transforms.adam(lr, b1=b1, eps=1e-8, eps_root=0.0)
    settings = dict(adaptation_steps=steps, meta_lr=eps, dtype="float64", seed=3, inner=inner)
    settings.update(inner_batch=batch, meta_optimizer="sgd")
    reference = l2l.MetaLearner("reptile", "omniglot-fc", ways=5, backend="torch", **settings)
    model = reference.algorithm.module
    theta = [p.detach().clone() for p in model.parameters()]
    phis = _by_hand(model, sx, sy, lr, steps, batch, b1)
    expected = [t + eps * sum(phi[i] - t for phi in phis) / len(phis) for i, t in enumerate(theta)]
    names = [name for name, _ in model.named_parameters()]
    expected = dict(zip(names, expected))
    with jax.enable_x64(backend == "jax"):
        learner = l2l.MetaLearner("reptile", "omniglot-fc", ways=5, backend=backend, **settings)
        learner.train_step(sx, sy, qx, qy)
        if backend == "torch":
            after = dict(learner.algorithm.module.named_parameters())
            for name in names:
                np.testing.assert_allclose(after[name].detach(), expected[name], rtol=0, atol=1e-10)
        else:  # compare in the jax layout: the expected weights put into the torch learner
            with torch.no_grad():
                for name, param in model.named_parameters():
                    param.copy_(expected[name])
            flax_expected = reference.meta_parameters(layout="flax")["model"]["params"]
            moved = learner.meta_parameters()["model"]["params"]
            differences = jax.tree_util.tree_map(
                lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()), moved, flax_expected
            )
            assert max(jax.tree_util.tree_leaves(differences)) < 1e-10, differences


def test_backends_agree_with_adam_and_minibatches(model="omniglot-cnn"):
    report = crosscheck(
        "reptile", model, ways=5, shots=2, meta_batch=3, dtype="float64", inner="adam",
        inner_batch=3, adaptation_steps=4,
    )  # fmt: skip
    assert report.passed, report
    assert report.adapted_parameters < 1e-12 and report.meta_gradients < 1e-10


def test_evaluation_adapts_with_the_same_minibatches_on_both_backends():
    sx, sy, qx, qy = class_by_class_tasks(shots=3)
    settings = dict(adaptation_steps=2, dtype="float64", seed=1, inner="adam", lr=1e-2, inner_batch=4)
    with jax.enable_x64(True):
        results = [
            l2l.MetaLearner("reptile", "omniglot-fc", ways=5, backend=name, **settings).evaluate(
                sx, sy, qx, qy, adaptation_steps=7
            )
            for name in ("torch", "jax")
        ]
    np.testing.assert_allclose(results[0]["task_losses"], results[1]["task_losses"], rtol=1e-10)


def test_the_options_name_themselves_when_they_do_not_apply():
    with pytest.raises(ValueError, match=r"inner_batch=4 does not apply to algorithm='maml'"):
        l2l.MetaLearner("maml", "omniglot-fc", ways=5, inner_batch=4, backend="torch")
    with pytest.raises(ValueError, match=r"meta_optimizer='rmsprop' is not one of 'adam', 'sgd'"):
        l2l.MetaLearner("maml", "omniglot-fc", ways=5, meta_optimizer="rmsprop", backend="jax")


def test_torch_functional_vmapped_and_stateful_forms_take_the_same_minibatches():
    """Reptile(batch_size=4, inner=adam): the functional adapt, meta_batch_loss under vmap and in
    sequence, and the stateful learner.adapt(loss) fed inner_batches(...) agree."""
    from l2l_multi.backends.torch import algorithms as talg
    from l2l_multi.backends.torch.algorithms._reptile import inner_batches

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    reptile = talg.Reptile(model, inner=l2l.transforms.adam(0.05, b1=0.0), batch_size=4)
    generator = torch.Generator().manual_seed(1)
    sx = torch.randn(2, 9, 6, generator=generator, dtype=torch.float64)
    sy = torch.arange(3).repeat_interleave(3).repeat(2, 1)  # class by class, as TaskDataset samples
    qx, qy = sx[:, :3], sy[:, :3]
    learner = reptile.clone()
    for x, y in inner_batches(sx[0], sy[0], 4, 5):
        assert sorted(y.tolist()) in ([0, 0, 1, 2], [0, 1, 1, 2], [0, 1, 2, 2])  # every class in each
        learner.adapt(torch.nn.functional.cross_entropy(learner(x), y))
    adapted = reptile.adapt(reptile.meta_parameters(), sx[0], sy[0], steps=5)
    for name, value in learner.module.named_parameters():
        torch.testing.assert_close(adapted[name], value, rtol=0, atol=1e-12)
    results = {
        task_map: talg.meta_batch_loss(
            reptile, reptile.meta_parameters(), sx, sy, qx, qy, steps=5, task_map=task_map
        )
        for task_map in ("sequential", "vmap")
    }
    torch.testing.assert_close(
        results["vmap"].task_losses, results["sequential"].task_losses, rtol=1e-12, atol=0
    )
