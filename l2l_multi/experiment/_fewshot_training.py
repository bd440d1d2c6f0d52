"""The few-shot driver's training loop: meta-updates, validation, checkpoints and stopping.

:func:`train_learner` continues from the run folder's checkpoint (if any), validates and saves a
checkpoint every ``--eval-every`` updates, and stops early at ``--max-train-seconds`` or, between
two steps, on Ctrl-C (``TrainingStopped`` after the checkpoint is saved). A refused (non-finite)
meta-update stops the run unless ``--skip-nonfinite N`` lets it step over up to N of them: each is
reported and listed, the batch consumed and the meta-parameters left as they were.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, NamedTuple

import numpy as np

from .._checks import NonFiniteUpdate
from ._faults import fault_point
from ._interrupt import StopRequest, TrainingStopped
from ._processes import Processes
from ._protocol import evaluate_tasks
from ._run import RunFolder
from ._tensorboard import ScalarLog


def evaluate_protocol(
    learner,
    args: argparse.Namespace,
    tasks,
    num_tasks: int,
    ways: int,
    progress: bool = False,
    transductive: bool = True,
    shots: int | None = None,
) -> dict[str, Any]:
    """``evaluate_tasks`` on the first ``num_tasks`` of ``tasks`` (``ways`` classes) with ``shots``
    support samples per class (``None``: the first of ``--test-shots``), the run's adaptation
    steps and evaluation batch: validation and test score alike (validation always
    transductively; the test with each protocol of ``--test-protocol``)."""
    return evaluate_tasks(
        learner,
        tasks,
        shots=args.test_shots[0] if shots is None else shots,
        num_tasks=num_tasks,
        batch_size=args.eval_batch,
        adaptation_steps=args.test_adaptation_steps,
        ways=ways,
        progress=progress,
        transductive=transductive,
        inner_batch=args.test_inner_batch,
        inner_order=args.test_inner_order,
    )


class Training(NamedTuple):
    """How training ended: ``iterations`` done (skipped ones included), why it ``stopped_early``
    (``None``: it did not), ``began``, the ``time.perf_counter()`` origin that counts a resumed
    run's earlier time, and the ``skipped`` iterations (a list of ints, ``--skip-nonfinite``)."""

    iterations: int
    stopped_early: str | None
    began: float
    skipped: list[int]


def train_learner(
    args: argparse.Namespace,
    run: RunFolder,
    learner,
    train,
    validation,
    processes: Processes,
    stop: StopRequest | None = None,
) -> Training:
    """Trains ``learner`` (an ``l2l_multi.MetaLearner``) on the meta-batches of ``train`` (a
    ``TrainTasks``) up to ``args.iterations`` updates, validating on ``validation`` tasks; the
    metrics rows and checkpoints go to ``run``. Closes ``train`` when it returns."""
    start, elapsed, window, skipped = 0, 0.0, [], []
    if run.checkpoint is not None:
        checkpoint = run.checkpoint
        learner.load_state_dict(checkpoint["learner"])
        train.load_state_dict(checkpoint["train_tasks"])
        start, elapsed, window = checkpoint["iteration"], checkpoint["elapsed"], checkpoint["window"]
        skipped = list(checkpoint.get("skipped", []))  # (folders saved before the option: none)
    allowed = getattr(args, "skip_nonfinite", 0)

    from tqdm.auto import tqdm

    stop = stop or StopRequest()  # (one never entered: Ctrl-C raises as usual)
    log = None
    if args.tensorboard and processes.is_main:  # a resumed run drops what followed its checkpoint
        log = ScalarLog(run.path, purge_step=start + 1 if run.checkpoint is not None else None)
    began = time.perf_counter() - elapsed
    bar = tqdm(
        range(start, args.iterations),
        initial=start,
        total=args.iterations,
        desc=args.algorithm,
        disable=not args.progress,
        dynamic_ncols=True,
    )

    def refuse(step: int, error: FloatingPointError) -> None:
        """Steps over the refused update ``step`` while ``--skip-nonfinite`` allows; else raises."""
        if len(skipped) >= allowed:
            raise error
        skipped.append(step)
        if processes.is_main:
            # (the learner's message counts committed updates; ``step`` counts this run's iterations)
            bar.write(f"iteration {step} skipped ({len(skipped)} of {allowed} allowed): {error}")

    def queue(batch, step: int) -> dict | None:
        """Queues update ``step``; its metrics, or ``None`` when it was refused and skipped."""
        nonlocal pending
        while True:
            queued = learner.iterations  # counts the pending update: a refusal of it names this
            try:
                return learner.train_step(*batch, wait=False)
            except NonFiniteUpdate as error:
                if pending is None or error.iteration != queued:
                    refuse(step, error)
                    return None
                refuse(pending[0], error)  # the previous update: drop it and queue this one again
                pending = None

    def record(step: int, metrics: dict) -> None:
        loss, accuracy = float(metrics["loss"]), float(metrics["accuracy"])
        if not np.isfinite(loss):
            raise FloatingPointError(f"the meta-loss became {loss} at iteration {step}")
        window.append([loss, accuracy])

    def settle() -> None:
        """Records the pending update once the learner has checked it (before evaluating, stopping)."""
        nonlocal pending
        if pending is None:
            return
        (step, metrics), pending = pending, None
        try:
            learner.check_finite()
        except NonFiniteUpdate as error:
            refuse(step, error)
            return
        record(step, metrics)

    def checkpoint_state(iteration: int) -> dict[str, Any]:
        return {
            "iteration": iteration,
            "learner": learner.state_dict(),
            "train_tasks": train.state_dict(),
            "window": window,
            "elapsed": time.perf_counter() - began,
            "skipped": skipped,
        }

    def stop_training() -> None:
        bar.close()
        train.close()
        settle()
        run.save_checkpoint(checkpoint_state(done))
        raise TrainingStopped(done)

    done, pending, stopped_early = start, None, None
    stop.active = True  # from here, a first Ctrl-C stops between two steps
    for iteration in bar:
        fault_point("training")
        if stop.requested and processes.size == 1:  # (several processes stop at an evaluation)
            stop_training()
        if args.meta_lr_halve_every:
            learner.set_meta_lr(args.meta_lr * 0.5 ** (iteration // args.meta_lr_halve_every))
        elif getattr(args, "meta_lr_final", None) is not None:  # linear, as Nichol et al.'s meta-step size
            done_fraction = iteration / args.iterations
            learner.set_meta_lr(args.meta_lr + done_fraction * (args.meta_lr_final - args.meta_lr))
        (sx, sy), (qx, qy) = train.next(args.meta_batch, args.shots)
        # Read the previous step's metrics only after queueing this one: the host samples the
        # next batch while an accelerator still computes.
        metrics = queue((sx, sy, qx, qy), iteration + 1)
        if pending is not None:
            record(*pending)
        done = iteration + 1
        pending = None if metrics is None else (done, metrics)
        if done % args.eval_every == 0 or done == args.iterations:
            settle()
            valid = evaluate_protocol(learner, args, validation, args.eval_tasks, args.test_ways[0])
            # (every update of the window skipped: no training figures)
            train_loss, train_accuracy = np.mean(window, axis=0) if window else (float("nan"),) * 2
            row = {
                "iteration": done,
                "train_loss": float(train_loss),
                "train_accuracy": float(train_accuracy),
                "valid_loss": valid["loss"],
                "valid_accuracy": valid["accuracy"],
                "valid_ci95": valid["ci95"],
                "elapsed_s": round(time.perf_counter() - began, 3),
            }
            run.log_metrics(row)
            if log is not None:
                log.write(row)
            bar.set_postfix(valid=f"{valid['accuracy']:.3f}", loss=f"{train_loss:.3f}")
            window = []
            run.save_checkpoint(checkpoint_state(done))
            if processes.size > 1 and processes.any(stop.requested):  # every rank at the same update
                stop_training()
            over = bool(args.max_train_seconds) and time.perf_counter() - began >= args.max_train_seconds
            if processes.any(over):  # every rank stops at the same update
                stopped_early = f"time budget of {args.max_train_seconds:g} s reached after {done} updates"
                break
    bar.close()
    train.close()
    stop.active = False  # testing: Ctrl-C interrupts at once (the last checkpoint stands)
    if log is not None:
        log.close()
    return Training(done, stopped_early, began, skipped)
