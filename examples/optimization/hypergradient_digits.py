"""Hypergradient descent (SGD-HD) vs SGD on scikit-learn's digits, torch or jax.

SGD-HD (Baydin et al., "Online Learning Rate Adaptation with Hypergradient Descent", ICLR 2018,
Algorithm 4) adapts one global learning rate online: ``alpha_t = alpha_{t-1} + beta * g_t . g_{t-1}``
before the step ``theta_t = theta_{t-1} - alpha_t * g_t``. Both optimizers are the backend-neutral
pure transforms ``l2l_multi.transforms.hypergradient_sgd`` and ``sgd``, applied to torch tensors
(gradients from ``torch.autograd.grad``) or inside a compiled jax step (``jax.grad``); both start
from the same weights and see the same minibatches.

Defaults follow our reading of the paper's logistic-regression experiment on MNIST (Sec. 5.1:
minibatches of 128, initial rate alpha_0 = 0.001 and hypergradient rate beta = 0.001 for SGD-HD;
not re-checked against the paper text here),
on digits instead of MNIST, for 2,000 steps (~180 epochs of the 1,437 training images). The
paper's point, which this reproduces: from a too-small initial rate, SGD-HD raises its rate
within the first steps and reaches a much lower loss than SGD at that rate. ``metrics.csv``
logs the rate (``hd_learning_rate``) with the losses, and ``curve.png`` plots both.

    python examples/optimization/hypergradient_digits.py [--backend jax] [--hidden 100] [--quick]
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _digits  # noqa: E402

from l2l_multi import transforms  # noqa: E402
from l2l_multi.experiment import RunFolder  # noqa: E402

QUICK = {"iterations": 20, "eval_every": 5}
RULES = ("sgd", "hd")


def optimizers(args) -> dict[str, transforms.GradientTransformation]:
    return {"sgd": transforms.sgd(args.lr), "hd": transforms.hypergradient_sgd(args.lr, args.hyper_lr)}


class TorchHypergradient:
    """Parameters as lists of tensors; the model is called with ``torch.func.functional_call``."""

    def __init__(self, args, data):
        import torch

        self.torch = torch
        (train_x, train_y), (test_x, test_y) = data
        self.train = torch.from_numpy(train_x), torch.from_numpy(train_y)
        self.test = torch.from_numpy(test_x), torch.from_numpy(test_y)
        self.model = _digits.torch_mlp(args.hidden, args.seed)
        self.names = [name for name, _ in self.model.named_parameters()]
        initial = [p.detach().clone() for p in self.model.parameters()]
        self.rules = optimizers(args)
        self.params = {name: [p.clone() for p in initial] for name in RULES}
        self.states = {name: rule.init(self.params[name]) for name, rule in self.rules.items()}

    def logits(self, params, x):
        return self.torch.func.functional_call(self.model, dict(zip(self.names, params)), (x,))

    def step(self, indices):
        torch = self.torch
        x, y = self.train[0][indices], self.train[1][indices]
        for name, rule in self.rules.items():
            params = [p.detach().requires_grad_() for p in self.params[name]]
            loss = torch.nn.functional.cross_entropy(self.logits(params, x), y)
            grads = list(torch.autograd.grad(loss, params))
            with torch.no_grad():
                updates, self.states[name] = rule.update(grads, self.states[name], params)
                self.params[name] = [p.detach() for p in transforms.apply_updates(params, updates)]

    def evaluate(self) -> dict[str, float]:
        row = {}
        for name in RULES:
            model = functools.partial(self.logits, self.params[name])
            row[f"{name}_train_loss"] = _digits.torch_scores(model, *self.train)[0]
            row[f"{name}_test_loss"], row[f"{name}_test_accuracy"] = _digits.torch_scores(model, *self.test)
        row["hd_learning_rate"] = float(self.states["hd"].learning_rate)
        return row

    def state_dict(self) -> dict[str, Any]:
        numpy = lambda tree: transforms.tree_map(lambda t: t.detach().clone().numpy(), tree)
        return {"params": numpy(self.params), "states": numpy(self.states)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # the structures (the rules' NamedTuple states) come from the live trees, values from the file
        tensor = lambda live, saved: self.torch.from_numpy(np.asarray(saved))  # noqa: E731
        self.params = transforms.tree_map(tensor, self.params, state["params"])
        self.states = transforms.tree_map(tensor, self.states, state["states"])


class JaxHypergradient:
    """Parameters as a flax ``params`` tree; one compiled step per rule."""

    def __init__(self, args, data):
        import jax
        import optax

        self.jax = jax
        (train_x, train_y), (test_x, test_y) = data
        self.train_host = train_x, train_y.astype(np.int32)
        self.train = jax.numpy.asarray(train_x), jax.numpy.asarray(train_y.astype(np.int32))
        self.test = jax.numpy.asarray(test_x), jax.numpy.asarray(test_y.astype(np.int32))
        model = _digits.flax_mlp(args.hidden)
        initial = _digits.flax_params(model, args.hidden, args.seed)
        self.rules = optimizers(args)

        def loss(params, x, y):
            logits = model.apply({"params": params}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        def make_step(rule):
            @jax.jit
            def step(params, state, x, y):
                grads = jax.grad(loss)(params, x, y)
                updates, state = rule.update(grads, state, params)
                return transforms.apply_updates(params, updates), state

            return step

        self.steps = {name: make_step(rule) for name, rule in self.rules.items()}
        self.scores = jax.jit(functools.partial(_digits.jax_scores, model.apply))
        # committed to the device like the compiled steps' outputs (no second compilation)
        self.commit = lambda tree: jax.device_put(tree, jax.devices()[0])
        self.params = self.commit({name: initial for name in RULES})
        self.states = self.commit({name: rule.init(initial) for name, rule in self.rules.items()})

    def step(self, indices):
        x, y = (self.jax.numpy.asarray(a[indices]) for a in self.train_host)
        for name, step in self.steps.items():
            self.params[name], self.states[name] = step(self.params[name], self.states[name], x, y)

    def evaluate(self) -> dict[str, float]:
        row = {}
        for name in RULES:
            row[f"{name}_train_loss"] = float(self.scores(self.params[name], *self.train)[0])
            test_loss, test_accuracy = self.scores(self.params[name], *self.test)
            row[f"{name}_test_loss"], row[f"{name}_test_accuracy"] = float(test_loss), float(test_accuracy)
        row["hd_learning_rate"] = float(self.states["hd"].learning_rate)
        return row

    def state_dict(self) -> dict[str, Any]:
        return {
            "params": self.jax.tree_util.tree_map(np.asarray, self.params),
            "states": self.jax.tree_util.tree_map(np.asarray, self.states),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        tree_util = self.jax.tree_util
        for name in ("params", "states"):
            structure = tree_util.tree_structure(getattr(self, name))
            leaves = self.commit(tree_util.tree_leaves(state[name]))
            setattr(self, name, tree_util.tree_unflatten(structure, leaves))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parses ``argv``, trains both optimizers, writes the results folder; returns results.json's dict."""
    parser = _digits.base_parser(
        __doc__.splitlines()[0], hidden=[], lr=0.001, batch=128, iterations=2000, eval_every=10
    )
    parser.add_argument("--hyper-lr", type=float, default=0.001, help="beta, the rate of the rate")
    args = _digits.parse_arguments(parser, argv, QUICK, "results/hypergradient_digits_{backend}")
    config = _digits.configure(args)
    with RunFolder(args.out, config, resume=args.resume, may_change=("iterations",)) as run:
        run.record_environment(device=_digits.device_name(args.backend))
        return train_and_report(args, run, argv)


def train_and_report(args, run: RunFolder, argv) -> dict[str, Any]:
    """Trains in the open results folder ``run``, writes results.json and the curves."""
    import l2l_multi as l2l

    l2l.set_backend(args.backend)
    data = _digits.load_digits(args.split_seed)
    runner = (TorchHypergradient if args.backend == "torch" else JaxHypergradient)(args, data)
    seconds = _digits.train(args, run, runner, len(data[0][1]), "sgd-hd")
    rows = run.read_metrics()
    final = rows[-1]
    summary = {
        name: {key: float(final[f"{name}_{key}"]) for key in ("train_loss", "test_loss", "test_accuracy")}
        for name in RULES
    }
    summary["hd"]["final_learning_rate"] = float(final["hd_learning_rate"])
    summary["hd"]["max_learning_rate"] = max(float(row["hd_learning_rate"]) for row in rows)
    model = "logistic regression" if not args.hidden else f"MLP 64-{'-'.join(map(str, args.hidden))}-10"
    results = {
        "method": "SGD-HD (Baydin et al. 2018) vs SGD",
        "problem": f"sklearn digits, {model}",
        "backend": args.backend,
        "device": _digits.device_name(args.backend),
        "iterations": args.iterations,
        "quick": args.quick,
        "initial_learning_rate": args.lr,
        "hyper_learning_rate": args.hyper_lr,
        "final": summary,
        "train_seconds": round(seconds, 1),
        "command": _digits.command(argv),
    }
    run.write_results(results)
    _digits.plot_panels(
        run,
        [
            ("cross-entropy", ["sgd_train_loss", "sgd_test_loss", "hd_train_loss", "hd_test_loss"], True),
            ("learning rate", ["hd_learning_rate"], False),
        ],
        f"SGD-HD vs SGD (alpha_0 {args.lr}, beta {args.hyper_lr}) on digits, {args.backend}",
    )
    for name, label in (("sgd", "SGD"), ("hd", "SGD-HD")):
        row = summary[name]
        print(
            f"{label:>6} ({args.backend}): train loss {row['train_loss']:.4f}, test loss "
            f"{row['test_loss']:.4f}, test accuracy {100 * row['test_accuracy']:.2f}%"
        )
    print(
        f"SGD-HD learning rate: {args.lr} -> {summary['hd']['final_learning_rate']:.4g} "
        f"(max {summary['hd']['max_learning_rate']:.4g})"
    )
    print(run.describe_files())
    return results


if __name__ == "__main__":
    main()
