"""What the optimization examples share: scikit-learn's digits, seeded minibatches, the same MLP on
both backends, and the training loop with its results folder (exact resume).

Data: the 1,797 8x8 digit images that ship with scikit-learn (``load_digits``, no download),
split 80/20 by ``--split-seed`` and standardised with the training set's mean and deviation.
Minibatches: epoch ``e`` visits the training set in the order ``default_rng([seed, e])``
draws, so a batch is a function of (seed, iteration) and a resumed run sees the same ones.
Model: the torch MLP built after ``torch.manual_seed(seed)``; on the jax backend its weights are
converted to the flax twin (``l2l_multi.interop.torch_to_flax``) when torch is installed.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from l2l_multi.experiment import RunFolder, command_line, save_figure
from l2l_multi.experiment._cli import (
    DefaultsHelpFormatter,
    add_backend_option,
    check_float,
    check_int,
    parse_run_arguments,
)
from l2l_multi.experiment._plot import have_matplotlib, warn_plot_skipped

FEATURES, CLASSES = 64, 10


def base_parser(description: str, **defaults) -> argparse.ArgumentParser:
    """The options every optimization example has; ``defaults`` override the values below."""
    parser = argparse.ArgumentParser(description=description, formatter_class=DefaultsHelpFormatter)
    add = parser.add_argument
    add_backend_option(parser)
    add("--hidden", type=int, nargs="*", default=[32], help="hidden widths (none: logistic regression)")
    add("--lr", type=float, default=0.01, help="initial learning rate (shared by the baseline SGD)")
    add("--batch", type=int, default=32, help="minibatch size")
    add("--iterations", type=int, default=2000)
    add("--eval-every", type=int, default=50, help="log full-data losses and checkpoint every N steps")
    add("--split-seed", type=int, default=0, help="seed of the train/test split")
    add("--seed", type=int, default=0, help="seed of the initial weights and of the minibatch order")
    add("--quick", action="store_true", help="a CI-sized run (seconds) through every code path")
    add("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    add("--out", default=None, help="results folder")
    add("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm progress bar")
    parser.set_defaults(**defaults)
    return parser


def parse_arguments(parser: argparse.ArgumentParser, argv, quick: dict[str, Any], default_out: str):
    """Parses ``argv``: ``--quick`` changes the defaults (flags given still win); with ``--resume``,
    settings not given come from the folder's ``config.json`` (``--resume --out DIR`` alone)."""
    return parse_run_arguments(parser, argv, quick, lambda args: default_out.format(backend=args.backend))


def configure(args: argparse.Namespace) -> dict[str, Any]:
    """Validates every flag (``SystemExit`` naming it) and returns the run's configuration."""
    for name in ("batch", "iterations", "eval_every", "hidden"):
        check_int(args, name, 1)
    for name in ("seed", "split_seed"):
        check_int(args, name, 0)
    check_float(args, "lr", 0.0, strict=True)
    for name in ("meta_lr", "hyper_lr"):
        if hasattr(args, name):
            check_float(args, name)
    return {k: v for k, v in vars(args).items() if k not in ("resume", "out", "progress")}


# -- data ---------------------------------------------------------------------------------------


def load_digits(split_seed: int, test_fraction: float = 0.2):
    """``(train_x, train_y), (test_x, test_y)``: float32 features, int64 labels."""
    from sklearn.datasets import load_digits as sklearn_digits

    features, labels = sklearn_digits(return_X_y=True)
    order = np.random.default_rng(split_seed).permutation(len(labels))
    test_size = int(round(test_fraction * len(labels)))
    test, train = order[:test_size], order[test_size:]
    mean, deviation = features[train].mean(0), features[train].std(0)
    deviation[deviation == 0] = 1.0  # pixels that are blank in every training image
    features = ((features - mean) / deviation).astype(np.float32)
    labels = labels.astype(np.int64)
    return (features[train], labels[train]), (features[test], labels[test])


@functools.lru_cache(maxsize=2)
def _epoch_order(seed: int, epoch: int, size: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(size)


def batch_indices(seed: int, iteration: int, size: int, batch: int) -> np.ndarray:
    """Indices of ``iteration``'s minibatch (the last incomplete batch of an epoch is skipped)."""
    per_epoch = max(size // batch, 1)
    epoch, position = divmod(iteration, per_epoch)
    return _epoch_order(seed, epoch, size)[position * batch : (position + 1) * batch]


# -- models -------------------------------------------------------------------------------------


def torch_mlp(hidden, seed: int):
    import torch

    torch.manual_seed(seed)
    layers, width = [], FEATURES
    for size in hidden:
        layers += [torch.nn.Linear(width, size), torch.nn.ReLU()]
        width = size
    layers.append(torch.nn.Linear(width, CLASSES))
    return torch.nn.Sequential(*layers)


def flax_mlp(hidden):
    import flax.linen as nn

    class DigitsMLP(nn.Module):
        hidden: tuple

        @nn.compact
        def __call__(self, x):
            for size in self.hidden:
                x = nn.relu(nn.Dense(size)(x))
            return nn.Dense(CLASSES)(x)

    return DigitsMLP(tuple(hidden))


def flax_params(model, hidden, seed: int) -> dict:
    """The ``params`` tree: the seeded torch MLP's weights, or a flax init without torch."""
    import jax
    import jax.numpy as jnp

    if importlib.util.find_spec("torch") is not None:
        from l2l_multi import interop

        variables = interop.torch_to_flax(torch_mlp(hidden, seed), model, input_shape=(2, FEATURES))
    else:
        variables = model.init(jax.random.PRNGKey(seed), jnp.zeros((2, FEATURES), jnp.float32))
    return jax.tree_util.tree_map(jnp.asarray, dict(variables["params"]))


def torch_scores(model, x, y) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``(x, y)`` (torch tensors)."""
    import torch

    with torch.no_grad():
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        return float(loss), float((logits.argmax(-1) == y).double().mean())


def jax_scores(apply, params, x, y):
    """Mean cross-entropy and accuracy (0-d arrays; jit-able) of ``apply({"params": params}, x)``."""
    import optax

    logits = apply({"params": params}, x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, (logits.argmax(-1) == y).mean()


# -- the loop -----------------------------------------------------------------------------------


def device_name(backend: str) -> str:
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"jax {device.platform}: {getattr(device, 'device_kind', device.platform)}"
    return f"torch cpu: {platform.processor() or platform.machine()}"


def command(argv) -> str:
    return command_line(argv)


def train(args, run: RunFolder, runner, train_size: int, desc: str) -> float:
    """Runs ``runner.step(indices)`` for ``args.iterations`` steps, logging ``runner.evaluate()``
    (a dict of floats) at iteration 0, every ``--eval-every`` steps and at the end, with a
    checkpoint each time; with ``--resume`` continues from the last one. Returns the seconds spent."""
    start, elapsed = 0, 0.0
    if run.checkpoint is not None:
        checkpoint = run.checkpoint
        runner.load_state_dict(checkpoint["runner"])
        start, elapsed = checkpoint["iteration"], checkpoint["elapsed"]
    began = time.perf_counter() - elapsed

    def log(done: int) -> dict:
        row = {"iteration": done, "epoch": round(done * args.batch / train_size, 3), **runner.evaluate()}
        row["elapsed_s"] = round(time.perf_counter() - began, 3)
        run.log_metrics(row)
        run.save_checkpoint(
            {"iteration": done, "runner": runner.state_dict(), "elapsed": time.perf_counter() - began}
        )
        return row

    if start == 0:
        log(0)
    from tqdm.auto import tqdm

    bar = tqdm(
        range(start, args.iterations),
        initial=start,
        total=args.iterations,
        desc=desc,
        disable=not args.progress,
        dynamic_ncols=True,
    )
    for iteration in bar:
        runner.step(batch_indices(args.seed, iteration, train_size, args.batch))
        done = iteration + 1
        if done % args.eval_every == 0 or done == args.iterations:
            row = log(done)
            bad = [k for k, v in row.items() if not np.isfinite(v)]
            if bad:
                raise FloatingPointError(f"{bad} became non-finite at iteration {done}")
            bar.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k.endswith("train_loss")})
    bar.close()
    return time.perf_counter() - began


OPTIMIZER_NAMES = {"sgd": "SGD", "hd": "SGD-HD", "meta": "meta-descent"}
QUANTITY_NAMES = {
    "train_loss": "training loss",
    "test_loss": "test loss",
    "learning_rate": "learning rate",
    "rate_min": "smallest rate",
    "rate_mean": "mean rate",
    "rate_max": "largest rate",
}


def column_label(column: str) -> str:
    """A legend name for a metrics column: ``"hd_test_loss"`` -> ``"SGD-HD, test loss"``."""
    optimizer, _, quantity = column.partition("_")
    return f"{OPTIMIZER_NAMES.get(optimizer, optimizer)}, {QUANTITY_NAMES.get(quantity, quantity)}"


def plot_panels(run: RunFolder, panels: list[tuple[str, list[str], bool]], title: str) -> Path | None:
    """``curve.png`` with one panel per ``(ylabel, columns, log_scale)`` against the iteration;
    without matplotlib, a warning saying how to install it, and None."""
    if not have_matplotlib():
        warn_plot_skipped(run.path / "curve.png")
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = run.read_metrics()
    xs = [float(row["iteration"]) for row in rows]
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), dpi=100)
    for axis, (label, columns, log_scale) in zip(np.atleast_1d(axes), panels):
        for column in columns:
            axis.plot(xs, [float(row[column]) for row in rows], label=column_label(column))
        axis.set_xlabel("iteration")
        axis.set_ylabel(label)
        if log_scale:
            axis.set_yscale("log")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    return save_figure(figure, run.path / "curve.png")
