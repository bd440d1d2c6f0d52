"""The evaluation protocol shared by the examples: a fixed set of tasks, scored in batches."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data import partition_task_batch
from ._stats import mean_confidence_interval


def evaluate_tasks(
    learner,
    tasks,
    *,
    shots: int,
    num_tasks: int = 600,
    batch_size: int = 50,
    adaptation_steps: int | None = None,
    ways: int | None = None,
    progress: bool = False,
    transductive: bool = True,
    inner_batch: int | None = None,
    inner_order: str | None = None,
) -> dict[str, Any]:
    """Scores ``learner`` on the first ``num_tasks`` tasks of ``tasks``, always the same ones.

    Args:
        learner: an ``l2l.MetaLearner`` (anything with ``evaluate(sx, sy, qx, qy,
            adaptation_steps=, ways=)`` returning ``task_accuracies``, and ``transductive=`` for
            ``transductive=False``).
        tasks: a ``TaskDataset`` of ``(X [m, ...], y [m])`` tasks; rewound to its first task first
            and left where it was afterwards.
        shots: support samples per class (the rest of each class is the query set).
        num_tasks: tasks scored (the protocol: 600 test tasks); batch_size: tasks per call.
        adaptation_steps: inner steps at test time (None: the learner's training value).
        ways: classes per task when it differs from training (metric-based learners).
        progress: show a tqdm bar.
        transductive: the protocol (``MetaLearner.evaluate``'s): True scores a task's queries as
            one batch (batch-norm statistics shared by the queries, MAML's protocol); False scores
            each query on a batch of the support set and that query only (Nichol et al. 2018's
            non-transductive setting).
        inner_batch: samples per inner step (``MetaLearner.evaluate``'s, Reptile only; None:
            the learner's own).
        inner_order: their order, "interleaved" or "shuffled" (``MetaLearner.evaluate``'s,
            Reptile only; None: the learner's own).

    Returns:
        ``{"accuracy", "ci95", "loss", "num_tasks", "adaptation_steps", "transductive"}``: mean
        query accuracy and its 95% interval half-width over tasks (floats), the mean query loss,
        the number of tasks and of adaptation steps (ints) and the protocol (bool).
    """
    if not isinstance(transductive, bool):
        raise TypeError(f"transductive={transductive!r} must be a bool (True or False)")
    if isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks < 2:
        raise ValueError(f"num_tasks must be an int >= 2, got {num_tasks!r}")
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:  # partition_task allows 0
        raise ValueError(f"shots must be a positive integer, got {shots!r}")
    available = getattr(tasks, "num_tasks", -1)
    if available > 0 and num_tasks > available:
        raise ValueError(
            f"num_tasks={num_tasks} is more than the {available} fixed tasks of this TaskDataset; "
            "repeated tasks would narrow the interval falsely"
        )
    # asked for only when it differs from the default, so a learner without the option still works
    protocol = {} if transductive else {"transductive": False}
    if inner_batch is not None:
        protocol["inner_batch"] = inner_batch
    if inner_order is not None:
        protocol["inner_order"] = inner_order
    saved = tasks.state_dict()
    tasks.restart()
    accuracies, losses = [], []
    try:
        from tqdm.auto import tqdm

        with tqdm(total=num_tasks, desc="evaluate", unit="task", disable=not progress, leave=False) as bar:
            while len(accuracies) < num_tasks:
                count = min(batch_size, num_tasks - len(accuracies))
                X, y = tasks.sample_batch(count)
                (sx, sy), (qx, qy) = partition_task_batch(X, y, shots=shots)
                out = learner.evaluate(
                    sx, sy, qx, qy, adaptation_steps=adaptation_steps, ways=ways, **protocol
                )
                accuracies.extend(np.asarray(out["task_accuracies"], dtype=np.float64).tolist())
                losses.append(out["loss"] * count)
                bar.update(count)
    finally:
        tasks.load_state_dict(saved)
    mean, half = mean_confidence_interval(accuracies)
    steps = adaptation_steps if adaptation_steps is not None else getattr(learner, "adaptation_steps", None)
    return {
        "accuracy": mean,
        "ci95": half,
        "loss": float(sum(losses) / num_tasks),
        "num_tasks": num_tasks,
        "adaptation_steps": steps,
        "transductive": transductive,
    }
