"""The few-shot driver's shared parser: every option a script's algorithm offers, and their defaults.

A script's ``DEFAULTS`` (the method's published settings) fill the parser in; options that do not
apply to its algorithm are left out (``_fewshot_options.offered_options``) and keep their former
defaults. ``--quick`` (``QUICK``) changes the defaults to a run of a few seconds.
"""

from __future__ import annotations

import argparse
from typing import Any

from .._inner_batches import BATCH_ORDERS  # MetaLearner's inner_order= (Reptile)
from .._learner_options import INNER_OPTIMIZERS, OPTION_CHOICES
from ._cli import DefaultsHelpFormatter, add_backend_option
from ._fewshot_options import HIDDEN_DEFAULTS, offered_options, script_datasets

DATASETS = ("omniglot", "mini-imagenet", "tiered-imagenet", "cifarfs", "fc100")
DEFAULT_MODELS = {
    "omniglot": "omniglot-cnn",
    "mini-imagenet": "cnn4",
    "tiered-imagenet": "cnn4",
    "cifarfs": "cnn4-32",
    "fc100": "cnn4-32",
}
# what --quick changes: a run of a few seconds that still goes through every code path
QUICK = {
    "iterations": 4,
    "meta_batch": 2,
    "eval_every": 2,
    "eval_tasks": 4,
    "test_tasks": 6,
    "queries": 1,
    "test_queries": 1,
    "eval_batch": 3,
    "adaptation_steps": 1,
    "test_adaptation_steps": 1,
    "conv": "xla",  # jax: XLA's convolutions compile several times faster than the matmul ones
}


def argument_parser(defaults: dict[str, Any], description: str) -> argparse.ArgumentParser:
    """The shared command line; ``defaults`` (the method's published settings) fill it in."""
    parser = argparse.ArgumentParser(description=description, formatter_class=DefaultsHelpFormatter)
    add = parser.add_argument
    add_backend_option(parser)
    # only the options that apply to this script's algorithm (see _fewshot_options)
    offered = offered_options(defaults)
    parser.set_defaults(**{k: v for k, v in HIDDEN_DEFAULTS.items() if k not in offered})
    if "dataset" in offered:
        add("--dataset", choices=script_datasets(defaults), default=defaults["dataset"])
    add("--root", default="~/data", help="folder holding the dataset's files")
    add(
        "--download",
        action="store_true",
        help="fetch the dataset's missing files into --root (checksummed) before training",
    )
    add("--model", default=None, help="omniglot-cnn, omniglot-fc, cnn4 or cnn4-32 (default: by dataset)")
    add(
        "--train-splits",
        nargs="+",
        choices=("train", "validation"),
        default=["train"],
        help="splits the training classes come from ('train validation': a final run, as in Snell et al.)",
    )
    add("--ways", type=int, default=5, help="classes per training task")
    add("--shots", type=int, default=1, help="support samples per class")
    add("--queries", type=int, default=None, help="query samples per class in training (default: shots)")
    if "test_ways" in offered:
        add("--test-ways", type=int, nargs="+", default=None, help="classes per test task (default: ways)")
    add(
        "--test-shots",
        type=int,
        nargs="+",
        default=None,
        help="support samples per class at test time; several: each is tested (results keyed "
        "'5w1s', '5w5s', ...), the first validates (none given: shots)",
    )
    add("--test-queries", type=int, default=None, help="query samples per class at test time")
    add("--meta-batch", type=int, default=32, help="tasks per meta-update")
    add("--iterations", type=int, default=60000, help="meta-updates")
    if "lr" in offered:
        add("--lr", type=float, default=0.4, help="inner-loop learning rate")
    add("--meta-optimizer", choices=META_OPTIMIZERS, default="adam", help="the outer update")
    add("--meta-lr", type=float, default=1e-3, help="the meta-optimizer's learning rate")
    add(
        "--meta-lr-halve-every",
        type=int,
        default=0,
        help="halve the meta learning rate every N updates (0: never)",
    )
    add(
        "--meta-lr-final",
        type=float,
        default=None,
        help="anneal the meta learning rate linearly from --meta-lr at the first update to this "
        "value after the last (Nichol et al.'s meta-step schedule; none given: constant)",
    )
    if "adaptation_steps" in offered:
        add("--adaptation-steps", type=int, default=1, help="inner steps in training")
        add(
            "--test-adaptation-steps",
            type=int,
            default=None,
            help="inner steps at test time (none given: as in training)",
        )
    if "inner" in offered:
        add(
            "--inner",
            choices=INNER_OPTIMIZERS,
            default=None,
            help="the inner optimizer at rate --lr (none given: the algorithm's SGD step)",
        )
        add("--inner-beta1", type=float, default=None, help="--inner adam: its beta1 (none given: 0.9)")
    if "inner_batch" in offered:
        add(
            "--inner-batch",
            type=int,
            default=None,
            help="samples per inner step, taken in turn from the support set in class-interleaved "
            "order, in training and test (none given: the whole support set each step)",
        )
    if "test_inner_batch" in offered:
        add(
            "--test-inner-batch",
            type=int,
            default=None,
            help="samples per inner step at validation and test time (none given: --inner-batch)",
        )
    if "inner_order" in offered:
        add(
            "--inner-order",
            choices=BATCH_ORDERS,
            default="interleaved",
            help="the order of --inner-batch's batches: interleaved (each batch takes the next samples, "
            "classes interleaved) or shuffled (Nichol et al.'s code: every pass over the support set in "
            "a new random order, seeded by the task's data)",
        )
    if "test_inner_order" in offered:
        add(
            "--test-inner-order",
            choices=BATCH_ORDERS,
            default=None,
            help="the order of the inner batches at validation and test time (none given: --inner-order)",
        )
    if "inner_state" in offered:
        add(
            "--inner-state",
            choices=INNER_STATES,
            default="task",
            help="task: the inner optimizer starts afresh for every task; carried: one state (e.g. "
            "Adam's moments) passes from task to task in training, and every test task starts from "
            "it (Nichol et al.'s code)",
        )
    if "first_order" in offered:
        add("--first-order", action="store_true", help="drop the second-order terms of the meta-gradient")
    if "head" in offered:
        add("--head", choices=("svm", "ridge"), default="ridge", help="MetaOptNet's head")
    if "batch_norm" in offered:
        add(
            "--batch-norm",
            choices=("batch", "running"),
            default="batch",
            help="batch: every batch normalised with its own statistics, in training and test; running: "
            "torch's default BatchNorm2d keeps running statistics in training and the test uses them "
            "(Snell et al.'s and Lee et al.'s code: model.eval()), so each image's embedding depends on "
            "that image only (results keyed '5w1s running-statistics'; --test-protocol does not apply)",
        )
    add("--eval-every", type=int, default=1000, help="validate and checkpoint every N updates")
    add(
        "--max-train-seconds",
        type=float,
        default=0,
        help="stop at the first evaluation after this many seconds of training and validation, "
        "then test (0: no limit)",
    )
    add(
        "--skip-nonfinite",
        type=int,
        default=0,
        help="step over up to N refused (non-finite) meta-updates, each reported and listed in "
        "results.json, the meta-parameters kept as they were (0: the first one stops the run)",
    )
    add("--eval-tasks", type=int, default=200, help="validation tasks per evaluation")
    add(
        "--eval-batch",
        type=int,
        default=50,
        help="tasks per evaluation call (memory, not results: may change on --resume)",
    )
    add("--test-tasks", type=int, default=600, help="test tasks (the protocol: 600)")
    add(
        "--test-protocol",
        choices=("transductive", "non-transductive", "both"),
        default="transductive",
        help="how test queries are scored with batch-norm statistics (Nichol et al. 2018, Sec. 5): "
        "transductive: a task's queries as one batch (MAML's protocol); non-transductive: each query "
        "on a batch of the support set and itself (results keyed '5w1s non-transductive'); both. "
        "Validation is always transductive",
    )
    add("--device", default=None, help="torch device (default: cpu)")
    add(
        "--tasks-on-device",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="gather the training tasks on the device: the dataset is copied there once and each "
        "meta-batch sends only its sample indices (the same tasks; default: on with an accelerator)",
    )
    add("--conv", choices=("auto", "xla", "matmul"), default="auto", help="jax: how convolutions run")
    add("--seed", type=int, default=0)
    add("--quick", action="store_true", help="a CI-sized run (seconds) through every code path")
    add("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    add(
        "--out",
        default=None,
        help="results folder (default: results/<algorithm>_<dataset>_<ways>w<shots>s_<backend>)",
    )
    add("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm progress bars")
    add(
        "--tensorboard",
        action="store_true",
        help="also write the metrics as TensorBoard scalars to <out>/tensorboard",
    )
    add(
        "--processes",
        type=int,
        default=1,
        help="run as N local processes sharing each meta-batch (as torchrun --standalone "
        "--nproc-per-node N would; under torchrun leave it out)",
    )
    parser.set_defaults(
        **{k: v for k, v in defaults.items() if k not in ("paper", "by_dataset", "first_order")}
    )
    parser.set_defaults(
        paper=defaults.get("paper", {}),
        paper_source=defaults.get("paper_source", ""),
        method=defaults.get("method", defaults["algorithm"]),
    )
    return parser


META_OPTIMIZERS = OPTION_CHOICES["meta_optimizer"]  # MetaLearner's meta_optimizer=
INNER_STATES = OPTION_CHOICES["inner_state"]  # MetaLearner's inner_state= (Reptile)
BATCH_NORMS = ("batch", "running")  # --batch-norm (MetaLearner's batch_norm=), metric algorithms only
