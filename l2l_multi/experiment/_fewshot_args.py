"""The few-shot driver's command line: the shared parser, ``--quick``, ``--resume`` and validation.

:func:`argument_parser` builds the options a script's algorithm offers (see ``_fewshot_options``),
:func:`parse_arguments` resolves per-dataset settings, ``--quick`` and a resumed folder's saved
settings, and :func:`run_config` validates every flag before any work starts and returns what
``config.json`` records.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._learner_options import INNER_OPTIMIZERS, OPTION_CHOICES
from ._cli import (
    DefaultsHelpFormatter,
    check_float,
    check_int,
    explicit_options,
    restore_arguments,
    startup_backend,
)
from ._fewshot_options import (
    HIDDEN_DEFAULTS,
    TEST_PROTOCOLS,
    name_the_variant,
    offered_options,
    quick_settings,
    refuse_algorithm_option,
    script_datasets,
)
from ._run import RunFolder
from ._tensorboard import summary_writer_class

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
    add(
        "--backend",
        choices=("torch", "jax"),
        default=startup_backend(),
        help="default: L2L_BACKEND if set, else torch where installed, else jax",
    )
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
    add("--eval-batch", type=int, default=50, help="tasks per evaluation call")
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


# options that choose what is shown or written, not what is trained: not part of config.json
OUTPUT_OPTIONS = (
    *("resume", "out", "progress", "paper", "paper_source", "processes", "download", "tensorboard"),
)
# settings that may differ on --resume: they do not change what was trained so far
# (test_protocol: a folder saved before the option existed resumes with the script's default)
MAY_CHANGE = (
    *("iterations", "root", "max_train_seconds", "test_tasks", "device", "tasks_on_device", "test_protocol"),
    *("skip_nonfinite", "test_inner_batch"),
)
METRIC_ALGORITHMS = ("protonet", "metaoptnet")  # the only ones that test with other ways
META_OPTIMIZERS = OPTION_CHOICES["meta_optimizer"]  # MetaLearner's meta_optimizer=
INNER_STATES = OPTION_CHOICES["inner_state"]  # MetaLearner's inner_state= (Reptile)
BATCH_NORMS = ("batch", "running")  # --batch-norm (MetaLearner's batch_norm=), metric algorithms only


def default_out(args: argparse.Namespace) -> str:
    """The results folder when ``--out`` is not given."""
    return f"results/{args.algorithm}_{args.dataset}_{args.ways}w{args.shots}s_{args.backend}"


def parse_arguments(defaults: dict[str, Any], description: str, argv: list[str] | None = None):
    """Parses ``argv``; a ``defaults["by_dataset"][name]`` dict overrides the defaults (and the
    paper's numbers) when ``--dataset name`` is chosen. With ``--resume``, every setting not given
    on the command line comes from the folder's ``config.json`` (``--resume --out DIR`` alone
    continues a run); given ones are checked by the results folder (only :data:`MAY_CHANGE` may
    differ). Every flag is validated here, before any work starts (``SystemExit`` naming it)."""
    parser = argument_parser(defaults, description)
    refuse_algorithm_option(parser, defaults, sys.argv[1:] if argv is None else argv)
    chosen, _ = parser.parse_known_args(argv)
    explicit = explicit_options(parser, argv)
    saved: dict[str, Any] = {}
    if chosen.resume:
        try:
            saved = RunFolder.saved_config(chosen.out or default_out(chosen))
        except FileNotFoundError:
            saved = {}  # RunFolder refuses the resume with the folder's name
    dataset = chosen.dataset if "dataset" in explicit else saved.get("dataset", chosen.dataset)
    overrides = defaults.get("by_dataset", {}).get(dataset)
    if overrides is None and defaults.get("by_dataset"):
        parser.error(
            f"--dataset {dataset} has no settings here; choose from {sorted(defaults['by_dataset'])}"
        )
    if overrides:
        parser.set_defaults(**overrides)
    if chosen.quick:  # CI-sized defaults; options given on the command line still win
        parser.set_defaults(**quick_settings(defaults, QUICK))
    args = parser.parse_args(argv)
    args.out = args.out or default_out(args)
    restore_arguments(args, saved, explicit)
    if saved:  # a setting the folder does not record was at its unrecorded default there
        for key, default in UNRECORDED_DEFAULTS.items():
            if key not in saved and key not in explicit:
                setattr(args, key, default)
    name_the_variant(args, defaults)  # --first-order, MetaOptNet's --head: their own name and numbers
    return args


def run_config(args: argparse.Namespace) -> dict[str, Any]:
    """Fills the derived settings, validates every flag (``SystemExit`` naming it) and returns the
    run's configuration (everything but ``--resume``, ``--out``, ``--progress`` and the paper's
    numbers)."""
    args.queries = args.shots if args.queries is None else args.queries
    args.test_queries = args.queries if args.test_queries is None else args.test_queries
    args.test_ways = args.test_ways or [args.ways]
    if args.test_shots is None:
        args.test_shots = [args.shots]
    elif not isinstance(args.test_shots, list):  # a folder saved before --test-shots took several
        args.test_shots = [args.test_shots]
    args.model = args.model or DEFAULT_MODELS[args.dataset]
    if args.test_adaptation_steps is None:
        args.test_adaptation_steps = args.adaptation_steps
    interval = "a 95% interval needs at least 2 tasks"
    for name, minimum, why in (
        ("ways", 2, "a task needs 2 classes"),
        ("test_ways", 2, "a task needs 2 classes"),
        ("shots", 1, ""),
        ("test_shots", 1, ""),
        ("queries", 1, ""),
        ("test_queries", 1, ""),
        ("meta_batch", 1, ""),
        ("iterations", 1, ""),
        ("eval_every", 1, ""),
        ("eval_tasks", 2, interval),
        ("eval_batch", 1, ""),
        ("test_tasks", 2, interval),
        ("adaptation_steps", 0, ""),
        ("test_adaptation_steps", 0, ""),
        ("meta_lr_halve_every", 0, "0: never"),
        ("seed", 0, ""),
        ("skip_nonfinite", 0, "0: the first refused update stops the run"),
    ):
        check_int(args, name, minimum, why)
    check_float(args, "lr")
    check_float(args, "meta_lr")
    check_inner_settings(args)
    check_float(args, "max_train_seconds")
    if args.algorithm not in METRIC_ALGORITHMS and set(args.test_ways) != {args.ways}:
        raise SystemExit(
            f"--test-ways {args.test_ways}: {args.algorithm} has a {args.ways}-way output layer, so it tests "
            f"with --ways {args.ways} only; {' and '.join(METRIC_ALGORITHMS)} test with other ways"
        )
    if args.test_protocol not in TEST_PROTOCOLS:  # argparse checked the flag; this checks a restored value
        raise SystemExit(
            f"--test-protocol {args.test_protocol!r} is not one of {', '.join(map(repr, TEST_PROTOCOLS))}"
        )
    if args.batch_norm not in BATCH_NORMS:  # a restored value
        raise SystemExit(
            f"--batch-norm {args.batch_norm!r} is not one of {', '.join(map(repr, BATCH_NORMS))}"
        )
    if args.batch_norm == "running" and args.test_protocol != "transductive":
        raise SystemExit(
            f"--test-protocol {args.test_protocol}: with --batch-norm running every test image is "
            "normalised with the running statistics, on its own; leave --test-protocol out"
        )
    if args.tensorboard:
        summary_writer_class()  # SystemExit naming what to install, before any work
    if args.backend == "jax" and args.device is not None:
        raise SystemExit(
            f"--device {args.device}: only the torch backend takes a device (jax uses its default)"
        )
    config = {k: v for k, v in vars(args).items() if k not in OUTPUT_OPTIONS}
    # recorded only when chosen: older folders resume unchanged
    for key, default in UNRECORDED_DEFAULTS.items():
        if config[key] == default:
            del config[key]
    if len(config["test_shots"]) == 1:
        config["test_shots"] = config["test_shots"][0]
    return config


# settings config.json records only when they differ from these (older folders lack them)
UNRECORDED_DEFAULTS = {
    "batch_norm": "batch",
    "meta_optimizer": "adam",
    "meta_lr_final": None,
    "inner": None,
    "inner_beta1": None,
    "inner_batch": None,
    "inner_state": "task",
    "test_inner_batch": None,
}


def check_inner_settings(args: argparse.Namespace) -> None:
    """Refuses inconsistent inner-loop and meta-step settings, naming the flags (``SystemExit``)."""
    if args.inner is not None and args.inner not in INNER_OPTIMIZERS:  # a restored value
        raise SystemExit(f"--inner {args.inner!r} is not one of {', '.join(map(repr, INNER_OPTIMIZERS))}")
    if args.inner_beta1 is not None:
        if args.inner != "adam":
            raise SystemExit(f"--inner-beta1 {args.inner_beta1}: applies to --inner adam only")
        if not 0 <= args.inner_beta1 < 1:
            raise SystemExit(f"--inner-beta1 must lie in [0, 1), got {args.inner_beta1!r}")
    for name in ("inner_batch", "test_inner_batch"):
        if getattr(args, name) is not None:
            check_int(args, name, 1, "samples per inner step")
    if args.inner_state not in INNER_STATES:  # a restored value
        raise SystemExit(
            f"--inner-state {args.inner_state!r} is not one of {', '.join(map(repr, INNER_STATES))}"
        )
    if args.meta_optimizer not in META_OPTIMIZERS:  # a restored value
        raise SystemExit(
            f"--meta-optimizer {args.meta_optimizer!r} is not one of {', '.join(map(repr, META_OPTIMIZERS))}"
        )
    if args.meta_lr_final is not None:
        check_float(args, "meta_lr_final")
        if args.meta_lr_halve_every:
            raise SystemExit(
                "--meta-lr-final and --meta-lr-halve-every are two schedules of the meta learning rate; "
                "give one of them"
            )
