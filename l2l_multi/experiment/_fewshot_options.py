"""What a few-shot example script offers and records, decided by the algorithm it runs.

Every script under ``examples/vision`` runs one algorithm (its ``defaults["algorithm"]``), so its
command line shows only the options that apply to that algorithm: inner-loop options only where
an inner loop exists, ``--head`` only for MetaOptNet, ``--test-ways`` only for the metric methods
(they classify any number of classes), ``--dataset`` only where the script has several. An option
left out keeps its former default in the parsed arguments, so ``config.json`` has the same keys
for every script (and older results folders still resume).
"""

from __future__ import annotations

import argparse
from typing import Any

from .._registry import algorithm_spec

# values of the options a script does not offer (the shared parser's defaults before they were hidden)
HIDDEN_DEFAULTS = {
    "lr": 0.4,
    "adaptation_steps": 1,
    "test_adaptation_steps": None,
    "first_order": False,
    "head": "ridge",
    "test_ways": None,
    "batch_norm": "batch",
    "inner": None,
    "inner_beta1": None,
    "inner_batch": None,
    "inner_order": "interleaved",
    "inner_state": "task",
    "test_inner_batch": None,
    "test_inner_order": None,
}
# settings --quick changes only where an inner loop exists
INNER_LOOP_SETTINGS = ("adaptation_steps", "test_adaptation_steps")
DATASET_TITLES = {
    "omniglot": "Omniglot",
    "mini-imagenet": "mini-ImageNet",
    "tiered-imagenet": "tiered-ImageNet",
    "cifarfs": "CIFAR-FS",
    "fc100": "FC100",
}
HEAD_NAMES = {"svm": "MetaOptNet-SVM", "ridge": "MetaOptNet-RR"}  # Lee et al.'s names for the two heads
# --test-protocol -> the protocols run, as MetaLearner.evaluate's ``transductive`` flags
TEST_PROTOCOLS = {
    "transductive": (True,),
    "non-transductive": (False,),
    "both": (True, False),
}
NON_TRANSDUCTIVE_SUFFIX = " non-transductive"  # results.json "test"/"paper" key: "5w1s non-transductive"
# --batch-norm running (metric learners): tested with running statistics, "5w1s running-statistics"
RUNNING_STATISTICS_SUFFIX = " running-statistics"


def setting_key(ways: int, shots: int, transductive: bool, running_statistics: bool = False) -> str:
    """The ``results.json`` key of a test setting: ``transductive`` (bool) is the protocol of a
    model normalising with batch statistics; ``running_statistics`` (bool) marks a model
    evaluated with running statistics (``--batch-norm running``), where the protocol is moot.

    Example:
        >>> setting_key(5, 1, True), setting_key(20, 5, False), setting_key(5, 1, True, True)
        ('5w1s', '20w5s non-transductive', '5w1s running-statistics')
    """
    if running_statistics:
        return f"{ways}w{shots}s{RUNNING_STATISTICS_SUFFIX}"
    return f"{ways}w{shots}s" + ("" if transductive else NON_TRANSDUCTIVE_SUFFIX)


def script_datasets(defaults: dict[str, Any]) -> tuple[str, ...]:
    """The datasets a script has settings for: its ``by_dataset`` keys, else its one dataset."""
    return tuple(defaults.get("by_dataset") or (defaults["dataset"],))


def offered_options(defaults: dict[str, Any]) -> set[str]:
    """The argument names (``dest``) among :data:`HIDDEN_DEFAULTS` and ``dataset`` that the script
    running ``defaults["algorithm"]`` offers.

    Example:
        >>> sorted(offered_options({"algorithm": "protonet", "dataset": "omniglot"}))
        ['batch_norm', 'test_ways']
        >>> sorted(offered_options({"algorithm": "maml", "dataset": "omniglot"}))
        ['adaptation_steps', 'first_order', 'inner', 'lr', 'test_adaptation_steps']
    """
    spec = algorithm_spec(defaults["algorithm"])
    offered = set()
    if spec.adapts:
        offered |= {"lr", "adaptation_steps", "test_adaptation_steps"}
    if spec.kind in ("gradient", "head"):  # Reptile is first-order by construction
        offered.add("first_order")
    if spec.flexible_ways:
        offered.add("test_ways")
    if "head" in spec.options:
        offered.add("head")
    offered |= {"inner", "inner_batch", "inner_order", "inner_state"} & set(spec.options)
    if "inner_batch" in spec.options:
        offered.add("test_inner_batch")
    if "inner_order" in spec.options:
        offered.add("test_inner_order")
    if spec.kind == "metric":
        offered.add("batch_norm")
    if len(script_datasets(defaults)) > 1:
        offered.add("dataset")
    return offered


def quick_settings(defaults: dict[str, Any], quick: dict[str, Any]) -> dict[str, Any]:
    """``quick`` without the inner-loop settings when the algorithm has no inner loop (ProtoNets
    and MetaOptNet keep 0 adaptation steps under ``--quick``)."""
    if algorithm_spec(defaults["algorithm"]).adapts:
        return dict(quick)
    return {k: v for k, v in quick.items() if k not in INNER_LOOP_SETTINGS}


def refuse_algorithm_option(parser: argparse.ArgumentParser, defaults: dict[str, Any], argv) -> None:
    """``--algorithm`` is not an option of a script: each runs one method and records that method's
    name and published numbers. Exits (``parser.error``) naming the script to run instead."""
    for word in argv:
        if word == "--algorithm" or word.startswith("--algorithm="):
            parser.error(
                f"--algorithm: this script runs {defaults.get('method', defaults['algorithm'])} only, and "
                "records that method's name and published numbers; each algorithm has its own script "
                "in examples/vision (e.g. protonet_omniglot.py, anil_miniimagenet.py)"
            )


def name_the_variant(args: argparse.Namespace, defaults: dict[str, Any]) -> None:
    """Sets ``args.method``, ``args.paper`` and ``args.paper_source`` for the variant chosen on the
    command line: ``--first-order`` (the script's ``defaults["first_order"]`` entry when it has
    one, else "first-order <method>" with no published number) and MetaOptNet's ``--head`` (the
    paper's numbers belong to ``defaults["paper_head"]``, default "svm")."""
    args.method = defaults.get("method", defaults["algorithm"])  # (a resumed run restored the variant's)
    if args.first_order:
        if "first_order" in defaults:  # e.g. first-order MAML's own name and numbers
            for key, value in defaults["first_order"].items():
                setattr(args, key, value)
        else:
            args.method = f"first-order {args.method}"
            args.paper, args.paper_source = {}, f"no published number for {args.method}"
    if args.algorithm == "metaoptnet":
        args.method = HEAD_NAMES[args.head]
        if args.head != defaults.get("paper_head", "svm"):
            source = args.paper_source
            args.paper, args.paper_source = {}, f"{source}: numbers for the other head, not recorded"


def adaptation_phrase(steps: int) -> str:
    """``"1 adaptation step"``, ``"3 adaptation steps"``."""
    return f"{steps} adaptation step{'' if steps == 1 else 's'}"


def setting_title(method: str, dataset: str, ways: int, shots: int, backend: str) -> str:
    """The figure title, e.g. ``"MAML, Omniglot 5-way 1-shot, jax"``."""
    return f"{method}, {DATASET_TITLES.get(dataset, dataset)} {ways}-way {shots}-shot, {backend}"


def learning_curves(eval_tasks: int, ways: int, paper: float | None = None, source: str = "") -> list:
    """The two panels of a few-shot run's ``curve.png`` for ``RunFolder.plot``: query accuracy
    in percent (validation with its 95% interval band, chance level ``100 / ways`` for the
    validation tasks' ways, and the published test accuracy ``paper`` (a fraction) of that
    setting when given) and the query loss."""
    from ._plot import Curves

    validation = f"validation ({eval_tasks} fixed tasks; band: 95% interval)"
    references = {f"chance ({100 / ways:.3g}%)": 100 / ways}
    if paper is not None:
        label = f"published test accuracy {100 * paper:.4g}%" + (f" ({source})" if source else "")
        references[label] = 100 * paper
    return [
        Curves(
            "query accuracy (%)",
            {"train_accuracy": "training tasks (mean since the last point)", "valid_accuracy": validation},
            {"valid_accuracy": "valid_ci95"},
            100.0,
            (0.0, 100.0),
            references,
        ),
        Curves("query loss (cross-entropy)", {"train_loss": "training tasks", "valid_loss": "validation"}),
    ]
