"""The few-shot classification driver behind ``examples/vision/*.py``.

Each example script states its method's published hyper-parameters as ``defaults`` and calls
:func:`main`; everything else (backend, data, training loop, evaluation protocol, results folder,
exact resume) is shared here, so a method's script is a page of cited numbers.

Protocol: validation on the same ``--eval-tasks`` validation tasks at every evaluation; at the end,
``--test-tasks`` (600) test tasks for each of ``--test-ways``, mean accuracy with a 95% interval,
with ``--test-adaptation-steps`` inner steps stated in ``results.json``. ``--test-protocol``
(``transductive``, ``non-transductive`` or ``both``; a script's ``defaults["test_protocol"]``,
else transductive) says how the test queries meet batch norm (``MetaLearner.evaluate``'s
``transductive``): non-transductive results are keyed ``"5w1s non-transductive"`` beside the
transductive ``"5w1s"``; validation is always transductive. The metric learners' scripts also
take ``--batch-norm running`` (``MetaLearner``'s ``batch_norm="running"``): the model keeps
running batch-norm statistics in training and is validated and tested with them, as Snell et
al.'s and Lee et al.'s code do; its results are keyed ``"5w1s running-statistics"`` and
``--test-protocol`` does not apply (``config.json`` records ``batch_norm`` only when it is
``running``, so folders saved before the option resume).

A script offers only the options of its algorithm (``_fewshot_options``: no ``--head`` on MAML,
no inner-loop options on ProtoNets, no ``--algorithm``). ``--download`` fetches missing dataset
files; ``--tensorboard`` also writes the metrics rows as TensorBoard scalars; Ctrl-C stops between
two steps, saves a checkpoint and exits with status 130, naming the ``--resume`` command.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from pathlib import Path
from typing import Any

from ._cli import check_int
from ._fewshot_args import MAY_CHANGE, OUTPUT_OPTIONS, parse_arguments, run_config
from ._fewshot_parser import QUICK, argument_parser
from ._fewshot_results import device_name, test_and_report
from ._fewshot_training import train_learner
from ._interrupt import StopRequest, TrainingStopped, exit_interrupted
from ._processes import Processes, join, launch_local, open_run, script_command
from ._run import RunFolder

# the command line lives in _fewshot_parser and _fewshot_args; these names stay importable from here
__all__ = ["main", "argument_parser", "parse_arguments", "run_config", "OUTPUT_OPTIONS", "QUICK"]


def _tasksets(args: argparse.Namespace, ways: int, queries: int, shots: int):
    """The benchmark's train/validation/test task sets, the test ones with ``ways`` classes and
    ``shots + queries`` samples per class."""
    from ..vision.benchmarks import get_tasksets

    return get_tasksets(
        args.dataset,
        train_ways=args.ways,
        train_samples=args.shots + args.queries,
        test_ways=ways,
        test_samples=shots + queries,
        root=args.root,
        seed=args.seed,
        train_splits=tuple(args.train_splits),
        **({"download": True} if args.download else {}),
    )


def main(defaults: dict[str, Any], description: str, argv: list[str] | None = None) -> dict[str, Any]:
    """Parses ``argv``, trains, evaluates; returns (and writes) ``results.json``'s dict."""
    args = parse_arguments(defaults, description, argv)
    config = run_config(args)
    check_int(args, "processes", 1, "")
    if args.processes > 1 and "WORLD_SIZE" not in os.environ:  # launch the job, then read its results
        launch_local(args.processes, script_command(argv))
        return json.loads((Path(args.out).expanduser() / "results.json").read_text())
    processes = join(args.backend, args.device)
    args.progress = args.progress and processes.is_main
    try:
        run = open_run(
            processes,
            lambda: RunFolder(args.out, config, resume=args.resume, may_change=MAY_CHANGE),
            args.out,
            args.resume,
        )
        try:
            with StopRequest(active=False) as stop:
                return _train_and_test(args, run, argv, processes, stop)
        except TrainingStopped as stopped:  # Ctrl-C during training: the checkpoint is saved
            exit_interrupted(args.out, stopped.iteration)
        except KeyboardInterrupt:  # Ctrl-C outside the training steps (data, compiling, testing)
            exit_interrupted(args.out, None)
        finally:
            run.close()
    finally:
        processes.close()


def _train_and_test(
    args: argparse.Namespace, run: RunFolder, argv, processes: Processes, stop: StopRequest | None = None
) -> dict[str, Any]:
    """Builds the data and the learner, trains, then tests; returns ``results.json``'s dict."""
    import l2l_multi as l2l

    from .._learner_options import inner_optimizer
    from ._train_tasks import TrainTasks

    l2l.set_backend(args.backend)
    # every test split is built now: a data problem shows before training, not after it
    first = (args.test_ways[0], args.test_shots[0])  # the validation setting
    tasksets = _tasksets(args, first[0], args.test_queries, first[1])
    test_sets = {first: tasksets.test}
    for setting in itertools.product(args.test_ways, args.test_shots):
        if setting not in test_sets:
            test_sets[setting] = _tasksets(args, setting[0], args.test_queries, setting[1]).test
    options = {"device": args.device} if args.backend == "torch" and args.device else {}
    if args.backend == "jax":
        options["conv"] = args.conv
    if args.algorithm == "metaoptnet":
        options["head"] = args.head
    if args.batch_norm != "batch":  # metric learners only (the option is offered to them alone)
        options["batch_norm"] = args.batch_norm
    if args.inner is not None:  # built here: l2l_multi.transforms serve both backends
        b1 = 0.9 if args.inner_beta1 is None else args.inner_beta1
        options["inner"] = inner_optimizer(args.inner, args.algorithm, args.lr, l2l.transforms, b1=b1)
    if args.inner_batch is not None:  # Reptile only (the option is offered to it alone)
        options["inner_batch"] = args.inner_batch
    if args.inner_order != "interleaved":  # Reptile only (the option is offered to it alone)
        options["inner_order"] = args.inner_order
    if args.meta_optimizer != "adam":
        options["meta_optimizer"] = args.meta_optimizer
    if args.inner_state != "task":  # Reptile only (the option is offered to it alone)
        options["inner_state"] = args.inner_state
    learner = l2l.MetaLearner(
        args.algorithm,
        args.model,
        args.ways,
        lr=args.lr,
        meta_lr=args.meta_lr,
        adaptation_steps=args.adaptation_steps,
        first_order=args.first_order,
        seed=args.seed,
        backend=args.backend,
        **options,
    )
    run.record_environment(device=device_name(args))
    train = TrainTasks(tasksets.train, args.backend, args.device, args.tasks_on_device)
    training = train_learner(args, run, learner, train, tasksets.validation, processes, stop)
    return test_and_report(args, run, learner, test_sets, training, train.on_device, processes, argv)
