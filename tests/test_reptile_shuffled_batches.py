"""Reptile's shuffled inner batches (``Reptile(batch_order="shuffled")``, ``MetaLearner(...,
inner_order="shuffled")``, the driver's ``--inner-order``): Nichol et al.'s ``_mini_batches``
rule with task-seeded orders, the same on numpy, torch and jax, checked against a loop written
the way the paper's code draws its batches."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("jax")

import flax.linen  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402
from _helpers import class_by_class_tasks  # noqa: E402
from l2l_multi.backends.jax.algorithms import _reptile as jax_reptile  # noqa: E402
from l2l_multi.backends.torch.algorithms import _reptile as torch_reptile  # noqa: E402

import l2l_multi as l2l  # noqa: E402
from l2l_multi._inner_batches import mix32_numpy, shuffled_plan_numpy, task_seed_numpy  # noqa: E402
from l2l_multi.crosscheck import crosscheck  # noqa: E402
from l2l_multi.experiment import fewshot  # noqa: E402

VISION = Path(__file__).resolve().parents[1] / "examples" / "vision"


def defaults_of(name: str) -> dict:
    """The DEFAULTS dict of ``examples/vision/<name>.py`` (loaded, not run)."""
    return runpy.run_path(str(VISION / f"{name}.py"), run_name="not_main")["DEFAULTS"]


def _papers_batches(seed, size, batch_size, count):
    """Nichol et al.'s ``_mini_batches(samples, batch_size, count, replacement=False)`` written
    out as their generator runs it (shuffle, fill a batch sample by sample, hand it over when full,
    shuffle again when the pass ends), with ``random.shuffle`` replaced by the task-seeded
    order of pass ``p``: the samples sorted by the hash of ``(seed, p * size + j)``."""
    batches, batch, passes = [], [], 0
    while True:
        keys = [
            int(mix32_numpy(mix32_numpy(np.uint32(passes * size + j)) ^ np.uint32(seed))) for j in range(size)
        ]
        passes += 1
        for sample in sorted(range(size), key=keys.__getitem__):
            batch.append(sample)
            if len(batch) < batch_size:
                continue
            batches.append(batch)
            if len(batches) == count:
                return batches
            batch = []


@pytest.mark.parametrize("size,batch_size,steps", [(50, 10, 5), (25, 5, 50), (6, 4, 3), (7, 3, 9)])
def test_the_plan_is_the_papers_rule_and_the_same_in_jax(size, batch_size, steps):
    for seed in (0, 1, 2**32 - 1, 2654435769):
        plan = shuffled_plan_numpy(seed, size, batch_size, steps)
        assert plan.shape == (steps, batch_size) and plan.dtype == np.int64
        assert plan.tolist() == _papers_batches(seed, size, batch_size, steps)
        traced = jax.jit(jax_reptile.shuffled_plan, static_argnums=(1, 2, 3))(
            jnp.uint32(seed), size, batch_size, steps
        )
        np.testing.assert_array_equal(np.asarray(traced), plan)
    assert shuffled_plan_numpy(3, 5, 5, 4) is None and shuffled_plan_numpy(3, 5, None, 4) is None


def test_the_orders_vary_from_task_to_task_as_random_draws_do():
    """Over 2,000 seeds, 5 batches of 10 from 5 classes x 10 samples (the paper's training
    setting): each batch is a draw without replacement, so it holds 2 of every class with the
    hypergeometric probability (about 0.0215; the interleaved rule: always), each pass is a
    permutation, and every sample is equally likely in every position."""
    labels = np.repeat(np.arange(5), 10)
    plans = np.stack([shuffled_plan_numpy(seed, 50, 10, 5) for seed in range(2000)])
    assert all(sorted(plan.reshape(-1).tolist()) == list(range(50)) for plan in plans)
    balanced = np.mean(
        [(np.bincount(labels[batch], minlength=5) == 2).all() for batch in plans.reshape(-1, 10)]
    )
    assert 0.01 < balanced < 0.035, balanced
    first = np.bincount(plans[:, 0, 0], minlength=50)  # which sample comes first: 40 expected each
    chi2 = ((first - 40.0) ** 2 / 40.0).sum()
    assert chi2 < 100, chi2  # 49 degrees of freedom: 100 is far beyond its 99.99th percentile


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_the_task_seed_is_the_same_on_numpy_torch_and_jax(dtype):
    rng = np.random.default_rng(0)
    x = (rng.random((4, 25, 1, 7, 7)) * 255).astype(dtype)
    expected = [task_seed_numpy(task) for task in x]
    assert len(set(expected)) == 4 and all(0 <= seed < 2**32 for seed in expected)
    assert [torch_reptile.task_seed(torch.as_tensor(task)) for task in x] == expected
    with jax.enable_x64(dtype == np.float64):
        seeds = jax.jit(jax.vmap(jax_reptile.task_seed))(jnp.asarray(x))
        assert seeds.dtype == jnp.uint32 and np.asarray(seeds).tolist() == expected


def test_a_meta_step_adapts_on_the_shuffled_batches_on_both_backends():
    """One ``train_step`` of ``MetaLearner("reptile", inner_batch=6, inner_order="shuffled")``
    with plain SGD inside and out moves the weights to theta + eps * mean(phi - theta), where
    phi comes from SGD by hand on ``x[plan[i]]`` for each step i, with the plan from the numpy
    rule; jax matches torch."""
    sx, sy, qx, qy = class_by_class_tasks()
    lr, steps, batch, eps = 0.1, 4, 6, 0.5
    settings = dict(adaptation_steps=steps, meta_lr=eps, lr=lr, dtype="float64", seed=3)
    settings.update(inner_batch=batch, inner_order="shuffled", meta_optimizer="sgd")
    learner = l2l.MetaLearner("reptile", "omniglot-fc", ways=5, backend="torch", **settings)
    model = learner.algorithm.module
    theta = {name: p.detach().clone() for name, p in model.named_parameters()}
    step = {name: torch.zeros_like(value) for name, value in theta.items()}
    for x, y in zip(sx, sy):
        plan = shuffled_plan_numpy(task_seed_numpy(x), len(y), batch, steps)
        params = {name: value.clone().requires_grad_() for name, value in theta.items()}
        for positions in plan:
            logits = torch.func.functional_call(model, params, (torch.as_tensor(x[positions]),))
            loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(y[positions]))
            grads = torch.autograd.grad(loss, list(params.values()))
            params = {
                name: (p - lr * g).detach().requires_grad_() for (name, p), g in zip(params.items(), grads)
            }
        for name in step:
            step[name] += eps * (params[name].detach() - theta[name]) / len(sx)
    learner.train_step(sx, sy, qx, qy)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.detach(), theta[name] + step[name], rtol=0, atol=1e-12)
    with jax.enable_x64(True):
        other = l2l.MetaLearner("reptile", "omniglot-fc", ways=5, backend="jax", **settings)
        other.train_step(sx, sy, qx, qy)
        moved = other.meta_parameters()["model"]["params"]
        expected = learner.meta_parameters(layout="flax")["model"]["params"]  # float64 under x64
    gaps = jax.tree_util.tree_map(
        lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()), moved, expected
    )
    assert max(jax.tree_util.tree_leaves(gaps)) < 1e-12, gaps


def test_backends_agree_with_adam_on_shuffled_minibatches():
    report = crosscheck(
        "reptile", "omniglot-cnn", ways=5, shots=2, meta_batch=3, dtype="float64", inner="adam",
        inner_batch=3, inner_order="shuffled", adaptation_steps=4,
    )  # fmt: skip
    assert report.passed, report
    assert report.adapted_parameters < 1e-12 and report.meta_gradients < 1e-10


def test_evaluation_takes_the_order_of_the_call_and_keeps_the_learners():
    """``evaluate(inner_order="shuffled")`` on an interleaved learner scores as a learner built
    shuffled, on both backends, and the learner keeps its own order afterwards."""
    sx, sy, qx, qy = class_by_class_tasks(shots=3)
    settings = dict(adaptation_steps=3, dtype="float64", seed=1, inner="adam", lr=0.05, inner_batch=4)
    losses = {}
    with jax.enable_x64(True):
        for backend in ("torch", "jax"):
            learner = l2l.MetaLearner("reptile", "omniglot-fc", ways=5, backend=backend, **settings)
            built = l2l.MetaLearner(
                "reptile", "omniglot-fc", ways=5, backend=backend, inner_order="shuffled", **settings
            )
            losses[backend] = learner.evaluate(sx, sy, qx, qy, inner_order="shuffled")["task_losses"]
            np.testing.assert_allclose(
                built.evaluate(sx, sy, qx, qy)["task_losses"], losses[backend], rtol=1e-12
            )
            interleaved = learner.evaluate(sx, sy, qx, qy)["task_losses"]
            assert np.abs(interleaved - losses[backend]).max() > 1e-6  # other batches, other adaptation
            assert learner.algorithm.batch_order == "interleaved"
    np.testing.assert_allclose(losses["torch"], losses["jax"], rtol=1e-10)


def test_the_option_names_itself_and_its_values():
    with pytest.raises(ValueError, match=r"inner_order='random' must be one of 'interleaved', 'shuffled'"):
        l2l.MetaLearner("reptile", "omniglot-fc", ways=5, inner_order="random", backend="torch")
    with pytest.raises(ValueError, match=r"inner_order='shuffled' does not apply to algorithm='maml'"):
        l2l.MetaLearner("maml", "omniglot-fc", ways=5, inner_order="shuffled", backend="jax")
    learner = l2l.MetaLearner("reptile", "omniglot-fc", ways=5, backend="torch")
    sx, sy, qx, qy = (a.astype(np.float32) if a.dtype == float else a for a in class_by_class_tasks(tasks=1))
    with pytest.raises(ValueError, match=r"inner_order=1 must be one of"):
        learner.evaluate(sx, sy, qx, qy, inner_order=1)
    with pytest.raises(ValueError, match=r"batch_order='any' must be one of"):
        jax_reptile.Reptile(flax.linen.Dense(2), lr=0.1, batch_order="any")
    with pytest.raises(ValueError, match=r"batch_order=None must be one of"):
        torch_reptile.Reptile(torch.nn.Linear(2, 2), lr=0.1, batch_order=None)


def test_the_driver_records_the_order_and_takes_a_test_order_on_resume(tmp_path):
    """``--inner-order shuffled`` is recorded in config.json (the default is not: older folders
    resume unchanged); ``--test-inner-order`` may be given on resume; a hand-edited value is
    refused by name."""
    defaults = defaults_of("reptile_omniglot")
    plain = fewshot.run_config(fewshot.parse_arguments(defaults, "", []))
    assert "inner_order" not in plain and "test_inner_order" not in plain
    saved = fewshot.run_config(fewshot.parse_arguments(defaults, "", ["--inner-order", "shuffled"]))
    assert saved["inner_order"] == "shuffled"
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(plain))
    resume = ["--resume", "--out", str(folder)]
    resumed = fewshot.parse_arguments(defaults, "", [*resume, "--test-inner-order", "shuffled"])
    assert (resumed.inner_order, resumed.test_inner_order) == ("interleaved", "shuffled")
    assert "test_inner_order" in fewshot.MAY_CHANGE and "inner_order" not in fewshot.MAY_CHANGE
    (folder / "config.json").write_text(json.dumps({**plain, "inner_order": "sorted"}))
    with pytest.raises(SystemExit, match="--inner-order 'sorted' is not one of 'interleaved', 'shuffled'"):
        fewshot.run_config(fewshot.parse_arguments(defaults, "", resume))
