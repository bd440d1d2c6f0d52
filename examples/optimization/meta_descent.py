"""Meta-descent on scikit-learn's digits: a learned per-parameter step size vs plain SGD, torch or jax.

The learned optimizer takes ``theta_{t+1} = theta_t - lr * alpha * g_t`` with one scale ``alpha``
per parameter element (initially 1, so it starts as SGD with rate ``lr``). Its meta-objective is
the next minibatch's loss: differentiating ``L_{t+1}(theta_t - lr * alpha * g_t)`` through the
update gives ``dL_{t+1}/d alpha = -lr * g_{t+1} * g_t``, and Adam (``--meta-lr``) descends it; the
idea of meta-descent / IDBD (Sutton 1992) and of per-parameter hypergradient descent (Baydin et
al. 2018). Both backends implement the same scheme:

- torch: ``l2l.optim.LearnableOptimizer(model, ModuleTransform(l2l.nn.Scale), lr)``, whose
  ``step()`` leaves each parameter differentiable w.r.t. its ``Scale``, so the next
  ``loss.backward()`` reaches the scales;
- jax: ``l2l.optim.LearnableOptimizer(l2l.optim.elementwise_scale(1.0), lr)``, whose
  ``meta_gradients`` differentiates the next loss through the last update with ``jax.grad``
  (inside one compiled step).

Each step the scales are updated first (from the fresh hypergradient), then the parameters with
the new scales; the first step has no hypergradient yet. The baseline is plain SGD at the same
rate from the same weights on the same minibatches. The settings are ours (no paper reports
this problem): a 64-32-10 ReLU MLP, batches of 32, ``lr`` 0.01, Adam 0.01 on the scales, 2,000 steps.

    python examples/optimization/meta_descent.py [--backend jax] [--quick]
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _digits  # noqa: E402

from l2l_multi.experiment import RunFolder  # noqa: E402

QUICK = {"iterations": 20, "eval_every": 5}


class TorchMetaDescent:
    def __init__(self, args, data):
        import torch

        import l2l_multi as l2l

        self.torch, self.F = torch, torch.nn.functional
        (train_x, train_y), (test_x, test_y) = data
        self.train = torch.from_numpy(train_x), torch.from_numpy(train_y)
        self.test = torch.from_numpy(test_x), torch.from_numpy(test_y)
        self.lr = args.lr
        self.sgd_model = _digits.torch_mlp(args.hidden, args.seed)
        self.sgd = torch.optim.SGD(self.sgd_model.parameters(), lr=args.lr)
        self.model = _digits.torch_mlp(args.hidden, args.seed)
        transform = l2l.optim.ModuleTransform(l2l.nn.Scale)  # one scale per parameter element
        self.learned = l2l.optim.LearnableOptimizer(self.model, transform, lr=args.lr)
        self.meta_optimizer = torch.optim.Adam(self.learned.parameters(), lr=args.meta_lr)
        self.pending = None  # (parameters, gradients) of the last step: what the next hypergradient needs

    def step(self, indices):
        x, y = self.train[0][indices], self.train[1][indices]
        self.sgd.zero_grad()
        self.F.cross_entropy(self.sgd_model(x), y).backward()
        self.sgd.step()
        self.meta_optimizer.zero_grad()
        self.learned.zero_grad()
        self.F.cross_entropy(self.model(x), y).backward()  # reaches the scales through the last step
        self.meta_optimizer.step()  # skips the scales while they have no gradient (the first step)
        parameters = list(self.model.parameters())
        self.pending = ([p.detach() for p in parameters], [p.grad.detach() for p in parameters])
        self.learned.step()

    def rates(self) -> np.ndarray:
        scales = [t.alpha.detach().reshape(-1).numpy() for t in self.learned.transforms]
        return self.lr * np.concatenate(scales)

    def evaluate(self) -> dict[str, float]:
        row = {}
        for name, model in (("sgd", self.sgd_model), ("meta", self.model)):
            row[f"{name}_train_loss"] = _digits.torch_scores(model, *self.train)[0]
            row[f"{name}_test_loss"], row[f"{name}_test_accuracy"] = _digits.torch_scores(model, *self.test)
        rates = self.rates()
        row.update(
            meta_rate_mean=float(rates.mean()),
            meta_rate_min=float(rates.min()),
            meta_rate_max=float(rates.max()),
        )
        return row

    def state_dict(self) -> dict[str, Any]:
        numpy = lambda tensors: [t.detach().clone().numpy() for t in tensors]
        return {
            "sgd_model": numpy(self.sgd_model.parameters()),
            "model": numpy(self.model.parameters()),
            "scales": self.learned.state_dict(),
            "meta_optimizer": self.meta_optimizer.state_dict(),
            "pending": None if self.pending is None else tuple(numpy(part) for part in self.pending),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch = self.torch
        self.learned.load_state_dict(state["scales"])
        self.meta_optimizer.load_state_dict(state["meta_optimizer"])
        with torch.no_grad():
            for p, value in zip(self.sgd_model.parameters(), state["sgd_model"]):
                p.copy_(torch.from_numpy(value))
        if state["pending"] is None:
            with torch.no_grad():
                for p, value in zip(self.model.parameters(), state["model"]):
                    p.copy_(torch.from_numpy(value))
            return
        # replay the last step from its saved inputs: the parameters come back differentiable
        # w.r.t. the scales, as they were when the checkpoint was written
        before, grads = state["pending"]
        for p, value, grad in zip(self.model.parameters(), before, grads):
            with torch.no_grad():
                p.copy_(torch.from_numpy(value))
            p.grad = torch.from_numpy(grad)
        self.pending = tuple([torch.from_numpy(v) for v in part] for part in state["pending"])
        self.learned.step()
        for p, value in zip(self.model.parameters(), state["model"]):
            if not np.array_equal(p.detach().numpy(), value):
                raise RuntimeError("resume: replaying the last step did not reproduce the saved parameters")


class JaxMetaDescent:
    def __init__(self, args, data):
        import jax
        import jax.numpy as jnp
        import optax

        import l2l_multi as l2l

        self.jax = jax
        (train_x, train_y), (test_x, test_y) = data
        self.train = jnp.asarray(train_x), jnp.asarray(train_y.astype(np.int32))
        self.test = jnp.asarray(test_x), jnp.asarray(test_y.astype(np.int32))
        self.train_host = train_x, train_y.astype(np.int32)
        self.lr = lr = args.lr
        model = _digits.flax_mlp(args.hidden)
        params = _digits.flax_params(model, args.hidden, args.seed)
        # one scale per parameter element, initially 1: plain SGD at rate lr to begin with
        learned = l2l.optim.LearnableOptimizer(l2l.optim.elementwise_scale(1.0), lr=lr)
        meta_optimizer = optax.adam(args.meta_lr)

        def loss(params, x, y):
            logits = model.apply({"params": params}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        def sgd(params, x, y):
            grads = jax.grad(loss)(params, x, y)
            return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads)

        @jax.jit
        def first_step(sgd_params, params, scales, x, y):
            grads = jax.grad(loss)(params, x, y)
            return sgd(sgd_params, x, y), (params, grads), learned.step(scales, params, grads)

        @jax.jit
        def meta_step(sgd_params, pending, scales, meta_state, x, y):
            # the next loss through the last update: its gradient w.r.t. the scales, and the
            # gradient at the current parameters for the following update
            result = learned.meta_gradients(scales, *pending, loss, x, y)
            updates, meta_state = meta_optimizer.update(result.transform_grads, meta_state, scales)
            scales = optax.apply_updates(scales, updates)
            following = learned.step(scales, result.params, result.grads)
            return sgd(sgd_params, x, y), (result.params, result.grads), scales, meta_state, following

        self.first_step, self.meta_step = first_step, meta_step
        self.scores = jax.jit(functools.partial(_digits.jax_scores, model.apply))
        # committed to the device like the compiled steps' outputs: the second call then reuses the
        # first call's compilation instead of compiling a variant for uncommitted inputs
        self.commit = lambda tree: jax.device_put(tree, jax.devices()[0])
        scales = learned.init(params)
        self.sgd_params, self.params, self.scales, self.meta_state = self.commit(
            (params, params, scales, meta_optimizer.init(scales))
        )
        self.pending = None

    def step(self, indices):
        x, y = (self.jax.numpy.asarray(a[indices]) for a in self.train_host)
        if self.pending is None:
            self.sgd_params, self.pending, self.params = self.first_step(
                self.sgd_params, self.params, self.scales, x, y
            )
        else:
            self.sgd_params, self.pending, self.scales, self.meta_state, self.params = self.meta_step(
                self.sgd_params, self.pending, self.scales, self.meta_state, x, y
            )

    def evaluate(self) -> dict[str, float]:
        row = {}
        for name, params in (("sgd", self.sgd_params), ("meta", self.params)):
            row[f"{name}_train_loss"] = float(self.scores(params, *self.train)[0])
            test_loss, test_accuracy = self.scores(params, *self.test)
            row[f"{name}_test_loss"], row[f"{name}_test_accuracy"] = float(test_loss), float(test_accuracy)
        scales = self.jax.tree_util.tree_leaves(self.scales)
        rates = self.lr * np.concatenate([np.asarray(s).reshape(-1) for s in scales])
        row.update(
            meta_rate_mean=float(rates.mean()),
            meta_rate_min=float(rates.min()),
            meta_rate_max=float(rates.max()),
        )
        return row

    _FIELDS = ("sgd_params", "params", "scales", "meta_state", "pending")

    def state_dict(self) -> dict[str, Any]:
        return {k: self.jax.tree_util.tree_map(np.asarray, getattr(self, k)) for k in self._FIELDS}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        tree_util = self.jax.tree_util
        for name in self._FIELDS:
            if name == "pending" and state[name] is None:
                self.pending = None
                continue
            template = getattr(self, name) if name != "pending" else (self.params, self.params)
            leaves = self.commit(tree_util.tree_leaves(state[name]))
            setattr(self, name, tree_util.tree_unflatten(tree_util.tree_structure(template), leaves))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parses ``argv``, trains both optimizers, writes the results folder; returns results.json's dict."""
    parser = _digits.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--meta-lr", type=float, default=0.01, help="Adam's learning rate on the scales")
    args = _digits.parse_arguments(parser, argv, QUICK, "results/meta_descent_{backend}")
    config = _digits.configure(args)
    with RunFolder(args.out, config, resume=args.resume, may_change=("iterations",)) as run:
        run.record_environment(device=_digits.device_name(args.backend))
        return train_and_report(args, run, argv)


def train_and_report(args, run: RunFolder, argv) -> dict[str, Any]:
    """Trains in the open results folder ``run``, writes results.json and the curves."""
    import l2l_multi as l2l

    l2l.set_backend(args.backend)
    data = _digits.load_digits(args.split_seed)
    runner = (TorchMetaDescent if args.backend == "torch" else JaxMetaDescent)(args, data)
    seconds = _digits.train(args, run, runner, len(data[0][1]), "meta-descent")
    final = run.read_metrics()[-1]
    summary = {
        name: {key: float(final[f"{name}_{key}"]) for key in ("train_loss", "test_loss", "test_accuracy")}
        for name in ("sgd", "meta")
    }
    summary["meta"]["rate_mean"] = float(final["meta_rate_mean"])
    results = {
        "method": "meta-descent (learned per-parameter step sizes) vs SGD",
        "problem": f"sklearn digits, MLP 64-{'-'.join(map(str, args.hidden))}{'-' * bool(args.hidden)}10",
        "backend": args.backend,
        "device": _digits.device_name(args.backend),
        "iterations": args.iterations,
        "quick": args.quick,
        "final": summary,
        "train_seconds": round(seconds, 1),
        "command": _digits.command(argv),
    }
    run.write_results(results)
    _digits.plot_panels(
        run,
        [
            ("cross-entropy", ["sgd_train_loss", "sgd_test_loss", "meta_train_loss", "meta_test_loss"], True),
            ("learning rate", ["meta_rate_min", "meta_rate_mean", "meta_rate_max"], True),
        ],
        f"meta-descent vs SGD (lr {args.lr}) on digits, {args.backend}",
    )
    for name, label in (("sgd", "SGD"), ("meta", "meta-descent")):
        row = summary[name]
        print(
            f"{label:>12} ({args.backend}): train loss {row['train_loss']:.4f}, test loss "
            f"{row['test_loss']:.4f}, test accuracy {100 * row['test_accuracy']:.2f}%"
        )
    print(run.describe_files())
    return results


if __name__ == "__main__":
    main()
