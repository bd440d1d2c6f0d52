"""Reptile with one inner-optimizer state carried from task to task
(``MetaLearner("reptile", ..., inner_state="carried")``), as Nichol et al.'s code keeps one Adam
for all tasks: checked against a hand-written loop around a single ``torch.optim.Adam``, across
backends, through checkpoints and through the non-finite guard."""

from __future__ import annotations

import copy

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("jax")

import jax  # noqa: E402
import torch  # noqa: E402

import l2l_multi as l2l  # noqa: E402
from l2l_multi._inner_batches import batch_plan, interleaved_order_numpy  # noqa: E402
from l2l_multi.experiment._checkpoint import dumps, loads  # noqa: E402

LR, STEPS, BATCH, EPS, B1 = 1e-2, 3, 6, 0.5, 0.0


def _tasks(tasks=3, ways=5, shots=3, seed=0):
    """Support sets sampled class by class (as TaskDataset samples them), one query per class."""
    rng = np.random.default_rng(seed)
    sx = rng.normal(size=(tasks, ways * shots, 784))
    sy = np.tile(np.repeat(np.arange(ways), shots), (tasks, 1))
    qx = rng.normal(size=(tasks, ways, 784))
    qy = np.tile(np.arange(ways), (tasks, 1))
    return sx, sy, qx, qy


def _settings(**more):
    # eps_root 0: torch.optim.Adam (and TensorFlow's, the paper's) adds eps outside the root only
    inner = l2l.transforms.adam(LR, b1=B1, eps=1e-8, eps_root=0.0)
    settings = dict(adaptation_steps=STEPS, meta_lr=EPS, dtype="float64", seed=3, inner=inner)
    settings.update(inner_batch=BATCH, meta_optimizer="sgd", inner_state="carried")
    settings.update(more)
    return settings


class _ByHand:
    """The paper's training loop: one model copy, one torch.optim.Adam never reset; each task
    starts from the meta-weights theta with the moments the previous task left."""

    def __init__(self, model):
        self.model = model  # the meta-weights theta (updated by ``train``)
        self.copy = copy.deepcopy(model)
        self.adam = torch.optim.Adam(self.copy.parameters(), lr=LR, betas=(B1, 0.999), eps=1e-8)

    def _adapt(self, x, y, steps, batch):
        with torch.no_grad():
            for target, source in zip(self.copy.parameters(), self.model.parameters()):
                target.copy_(source)
        order = interleaved_order_numpy(y)
        plan = batch_plan(len(y), batch, steps)
        for step in range(steps):
            positions = order[plan[step]]
            self.adam.zero_grad()
            outputs = self.copy(torch.as_tensor(x[positions]))
            torch.nn.functional.cross_entropy(outputs, torch.as_tensor(y[positions])).backward()
            self.adam.step()

    def train(self, sx, sy):
        phis = []
        for x, y in zip(sx, sy):
            self._adapt(x, y, STEPS, BATCH)
            phis.append([p.detach().clone() for p in self.copy.parameters()])
        with torch.no_grad():
            for index, theta in enumerate(self.model.parameters()):
                theta.add_(EPS * sum(phi[index] - theta for phi in phis) / len(phis))

    def evaluate(self, sx, sy, qx, qy, steps):
        """Each task from the current moments, which are put back afterwards (the paper's
        ``evaluate`` restores its full state)."""
        saved, losses = copy.deepcopy(self.adam.state_dict()), []
        for x, y, x_query, y_query in zip(sx, sy, qx, qy):
            self.adam.load_state_dict(copy.deepcopy(saved))
            self._adapt(x, y, steps, BATCH)
            with torch.no_grad():
                outputs = self.copy(torch.as_tensor(x_query))
                losses.append(torch.nn.functional.cross_entropy(outputs, torch.as_tensor(y_query)).item())
        self.adam.load_state_dict(saved)
        return np.array(losses)


def _flax_weights(reference, model_weights):
    """``model_weights`` (torch, named) in the jax layout, through the reference learner."""
    with torch.no_grad():
        for name, param in reference.algorithm.module.named_parameters():
            param.copy_(model_weights[name])
    return reference.meta_parameters(layout="flax")["model"]["params"]


def _largest_difference(a, b) -> float:
    leaves = jax.tree_util.tree_leaves(
        jax.tree_util.tree_map(lambda u, v: float(np.abs(np.asarray(u) - np.asarray(v)).max()), a, b)
    )
    return max(leaves)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_two_meta_steps_and_evaluation_match_one_adam_never_reset(backend):
    first, second = _tasks(seed=0), _tasks(seed=1)
    reference = l2l.MetaLearner("reptile", "omniglot-fc", ways=5, backend="torch", **_settings())
    by_hand = _ByHand(copy.deepcopy(reference.algorithm.module))
    by_hand.train(*first[:2])
    by_hand.train(*second[:2])
    expected_losses = by_hand.evaluate(*first, steps=5)
    expected = {name: p.detach().clone() for name, p in by_hand.model.named_parameters()}
    with jax.enable_x64(backend == "jax"):
        learner = l2l.MetaLearner("reptile", "omniglot-fc", ways=5, backend=backend, **_settings())
        learner.train_step(*first)
        learner.train_step(*second)
        if backend == "torch":
            after = dict(learner.algorithm.module.named_parameters())
            for name, value in expected.items():
                np.testing.assert_allclose(after[name].detach(), value, rtol=0, atol=1e-10)
        else:
            moved = learner.meta_parameters()["model"]["params"]
            assert _largest_difference(moved, _flax_weights(reference, expected)) < 1e-10
        before = learner.state_dict()["inner_state"]
        losses = learner.evaluate(*first, adaptation_steps=5)["task_losses"]
        np.testing.assert_allclose(losses, expected_losses, rtol=1e-9)
        # evaluation starts from the carried state and leaves it as it was
        assert _largest_difference(before, learner.state_dict()["inner_state"]) == 0.0


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_a_checkpoint_resumes_the_carried_state_exactly(backend):
    first, second = _tasks(seed=0), _tasks(seed=1)
    with jax.enable_x64(backend == "jax"):
        learner = l2l.MetaLearner("reptile", "omniglot-fc", ways=5, backend=backend, **_settings())
        learner.train_step(*first)
        saved = loads(dumps(learner.state_dict()))  # the on-disk form: NamedTuples become tuples
        learner.train_step(*second)
        resumed = l2l.MetaLearner("reptile", "omniglot-fc", ways=5, backend=backend, **_settings(seed=9))
        resumed.load_state_dict(saved)
        resumed.train_step(*second)
        assert _largest_difference(learner.meta_parameters(), resumed.meta_parameters()) == 0.0
        assert (
            _largest_difference(learner.state_dict()["inner_state"], resumed.state_dict()["inner_state"])
            == 0.0
        )
        fresh = l2l.MetaLearner(
            "reptile", "omniglot-fc", ways=5, backend=backend, **_settings(inner_state="task")
        )
        with pytest.raises(ValueError, match=r"state holds an 'inner_state'.*inner_state='carried'"):
            fresh.load_state_dict(saved)
        with pytest.raises(ValueError, match=r"state has no 'inner_state'"):
            resumed.load_state_dict(fresh.state_dict())
        momentum = l2l.MetaLearner(
            "reptile", "omniglot-fc", ways=5, backend=backend, **_settings(inner="momentum", lr=0.1)
        )
        with pytest.raises(ValueError, match=r"state\['inner_state'\] holds \d+ arrays"):
            momentum.load_state_dict(saved)  # Adam's moments are not a momentum's trace


@pytest.mark.parametrize(("backend", "wait"), [("torch", True), ("torch", False), ("jax", False)])
def test_a_refused_step_keeps_the_carried_state(backend, wait):
    """torch undoes a guarded (wait=False) step after reading its flag; jax's compiled step
    selects the old state itself, whatever ``wait``."""
    first, second = _tasks(seed=0), _tasks(seed=1)
    with jax.enable_x64(backend == "jax"):
        learner = l2l.MetaLearner("reptile", "omniglot-fc", ways=5, backend=backend, **_settings())
        learner.train_step(*first)
        before = learner.state_dict()
        query_x = second[2].copy()
        query_x[1, 0, 0] = np.nan  # a non-finite query loss: the meta-loss is NaN
        with pytest.raises(FloatingPointError, match="iteration 2"):
            learner.train_step(second[0], second[1], query_x, second[3], wait=wait)
            learner.check_finite()
        after = learner.state_dict()
        assert after["iterations"] == 1
        assert _largest_difference(before["inner_state"], after["inner_state"]) == 0.0


def test_the_option_names_itself():
    with pytest.raises(ValueError, match=r"inner_state='carried' does not apply to algorithm='maml'"):
        l2l.MetaLearner("maml", "omniglot-fc", ways=5, inner_state="carried", backend="torch")
    with pytest.raises(ValueError, match=r"inner_state='kept' is not one of 'task', 'carried'"):
        l2l.MetaLearner("reptile", "omniglot-fc", ways=5, inner_state="kept", backend="jax")
    with pytest.raises(ValueError, match=r"task_map='vmap' with inner_state='carried'"):
        l2l.MetaLearner("reptile", "omniglot-fc", ways=5, inner_state="carried", task_map="vmap")


def test_evaluation_from_a_carried_state_agrees_across_backends_with_its_own_inner_batch():
    """After a train step (a carried state that is not the fresh one), ``evaluate(...,
    inner_batch=5)`` scores as a learner built with ``inner_batch=5`` holding the same state (the
    paper trains on batches of 10 and tests on batches of 5), and the backends agree, in both
    protocols."""
    tasks = _tasks(shots=4)
    results, learners = {}, {}
    with jax.enable_x64(True):
        for backend in ("torch", "jax"):
            learners[backend] = l2l.MetaLearner(
                "reptile", "omniglot-fc", ways=5, backend=backend, **_settings()
            )
            learners[backend].train_step(*tasks)
            for flag in (True, False):
                override = learners[backend].evaluate(
                    *tasks, adaptation_steps=4, transductive=flag, inner_batch=5
                )
                results[backend, flag] = override["task_losses"]
    for flag in (True, False):
        np.testing.assert_allclose(results["torch", flag], results["jax", flag], rtol=1e-10)
    # on torch (jax agrees with it above; its compiles are this test's slow part): the same as a
    # learner built with inner_batch=5 and the same state, and the override does not stay
    built = l2l.MetaLearner("reptile", "omniglot-fc", ways=5, backend="torch", **_settings(inner_batch=5))
    built.load_state_dict(learners["torch"].state_dict())
    for flag in (True, False):
        expected = built.evaluate(*tasks, adaptation_steps=4, transductive=flag)["task_losses"]
        np.testing.assert_allclose(results["torch", flag], expected, rtol=1e-12)
    own = learners["torch"].evaluate(*tasks, adaptation_steps=4)["task_losses"]
    assert np.abs(own - results["torch", True]).max() > 1e-6
    maml = l2l.MetaLearner("maml", "omniglot-fc", ways=5, backend="torch")
    with pytest.raises(ValueError, match=r"inner_batch=5 does not apply to algorithm='maml'"):
        maml.evaluate(*(np.asarray(a, np.float32) if a.dtype == float else a for a in tasks), inner_batch=5)
