"""The few-shot driver's test phase and what it reports: ``results.json``, the curve, a summary.

:func:`test_and_report` evaluates the trained learner on ``--test-tasks`` tasks for each of
``--test-ways`` and writes the results with the published numbers beside them.
"""

from __future__ import annotations

import argparse
import platform
import time
from typing import Any

from ._cli import command_line
from ._fewshot_options import TEST_PROTOCOLS, adaptation_phrase, learning_curves, setting_key, setting_title
from ._fewshot_training import Training, evaluate_protocol
from ._processes import Processes
from ._run import RunFolder


def device_name(args: argparse.Namespace) -> str:
    """The device the run computes on, e.g. ``"torch cpu: x86_64"`` or ``"jax gpu: H100"``."""
    if args.backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"jax {device.platform}: {getattr(device, 'device_kind', device.platform)}"
    if args.device and args.device.startswith("cuda"):
        import torch

        return f"torch cuda: {torch.cuda.get_device_name(args.device)}"
    return f"torch cpu: {platform.processor() or platform.machine()}"


def test_and_report(
    args: argparse.Namespace,
    run: RunFolder,
    learner,
    test_sets: dict[tuple[int, int], Any],
    training: Training,
    tasks_on_device: bool,
    processes: Processes,
    argv: list[str] | None,
) -> dict[str, Any]:
    """Tests ``learner`` on ``test_sets`` ((ways, shots) -> test tasks) with each protocol of
    ``args.test_protocol`` (transductive results under keys such as ``"5w1s"``, non-transductive
    ones under ``"5w1s non-transductive"``; with ``--batch-norm running`` one test per setting,
    under ``"5w1s running-statistics"``), writes ``results.json`` and the learning curve to
    ``run`` and, on the main process, prints the accuracies; returns the results."""
    done, stopped_early, began, skipped = training
    train_seconds = time.perf_counter() - began
    test = {}
    protocols = TEST_PROTOCOLS[getattr(args, "test_protocol", "transductive")]
    running = getattr(args, "batch_norm", "batch") == "running"
    for (ways, shots), tasks in test_sets.items():
        for transductive in protocols:
            result = evaluate_protocol(
                learner,
                args,
                tasks,
                args.test_tasks,
                ways,
                progress=args.progress,
                transductive=transductive,
                shots=shots,
            )
            test[setting_key(ways, shots, transductive, running)] = result
    results = {
        "method": args.method,
        "algorithm": args.algorithm,
        "dataset": args.dataset,
        "model": args.model,
        "backend": args.backend,
        "device": device_name(args),
        "train_setting": f"{args.ways}w{args.shots}s",
        "train_splits": list(args.train_splits),
        "iterations": done,
        "stopped_early": stopped_early,
        "skipped_iterations": skipped,  # their updates refused as non-finite (--skip-nonfinite)
        "quick": args.quick,
        "tasks_on_device": tasks_on_device,
        "test": test,
        "paper": {k: v for k, v in args.paper.items() if k in test},
        "paper_source": args.paper_source,
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.perf_counter() - began, 1),
        "command": command_line(argv),
    }
    run.write_results(results)  # rank 0's folder; the other ranks' run writes nothing
    title = setting_title(results["method"], args.dataset, args.ways, args.shots, args.backend)
    published = args.paper.get(f"{args.test_ways[0]}w{args.test_shots[0]}s")  # validation's setting
    curves = learning_curves(args.eval_tasks, args.test_ways[0], published, args.paper_source)
    run.plot("iteration", curves, title=title, xlabel="iteration (meta-updates)")
    for setting, result in test.items() if processes.is_main else ():
        print(
            f"{results['method']} {args.dataset} {setting}: {100 * result['accuracy']:.2f} "
            f"+- {100 * result['ci95']:.2f}% over {result['num_tasks']} test tasks "
            f"({adaptation_phrase(result['adaptation_steps'])})"
        )
    if processes.is_main:
        print(run.describe_files())
    return results
