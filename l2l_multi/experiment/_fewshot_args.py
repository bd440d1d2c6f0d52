"""The few-shot driver's command line: ``--quick``, ``--resume`` and validation.

:func:`argument_parser` (``_fewshot_parser``) builds the options a script's algorithm offers,
:func:`parse_arguments` resolves per-dataset settings, ``--quick`` and a resumed folder's saved
settings, and :func:`run_config` validates every flag before any work starts and returns what
``config.json`` records.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._learner_options import INNER_OPTIMIZERS
from ._cli import check_float, check_int, explicit_options, restore_arguments
from ._fewshot_options import TEST_PROTOCOLS, name_the_variant, quick_settings, refuse_algorithm_option
from ._fewshot_parser import (
    BATCH_NORMS,
    BATCH_ORDERS,
    DEFAULT_MODELS,
    INNER_STATES,
    META_OPTIMIZERS,
    QUICK,
    argument_parser,
)
from ._run import RunFolder
from ._tensorboard import summary_writer_class

# options that choose what is shown or written, not what is trained: not part of config.json
OUTPUT_OPTIONS = (
    *("resume", "out", "progress", "paper", "paper_source", "processes", "download", "tensorboard"),
)
# settings that may differ on --resume: they do not change what was trained so far
# (test_protocol: a folder saved before the option existed resumes with the script's default;
# eval_batch: tasks per evaluation call, each scored on its own, so it sets memory, not results: a
# test that ran out of memory at the end of training resumes with a smaller one)
MAY_CHANGE = (
    *("iterations", "root", "max_train_seconds", "test_tasks", "device", "tasks_on_device", "test_protocol"),
    *("skip_nonfinite", "test_inner_batch", "test_inner_order", "eval_batch"),
)
METRIC_ALGORITHMS = ("protonet", "metaoptnet")  # the only ones that test with other ways


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
    "inner_order": "interleaved",
    "inner_state": "task",
    "test_inner_batch": None,
    "test_inner_order": None,
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
    for name in ("inner_order", "test_inner_order"):
        value = getattr(args, name)
        if value is not None and value not in BATCH_ORDERS:  # a restored value
            flag = "--" + name.replace("_", "-")
            raise SystemExit(f"{flag} {value!r} is not one of {', '.join(map(repr, BATCH_ORDERS))}")
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
