"""Reptile on Omniglot 5-way with Adam's moments fresh per task or carried from task to task.

Nichol et al.'s code (supervised-reptile) adapts every task with one TensorFlow Adam (beta1 0)
whose moments and step count are never reset: each task continues from the state the previous
task left, and evaluation starts from it too (and restores it afterwards). ``l2l_multi``'s
Reptile starts the inner optimizer afresh for each task by default; ``MetaLearner(...,
inner_state="carried")`` (``--inner-state carried``) keeps one state as the paper's code does,
the result of this measurement. This script trains both ways with the
paper's other Omniglot settings (10 samples per class, 5 Adam steps of 1e-3 on batches of 10 in
class-interleaved order, meta-batch 5 taken in order, plain meta-steps annealed from 1 as over
100,000 updates) from the same weights on the same tasks, and scores 5-way 1-shot validation
tasks (50 Adam steps on the 5-sample support set, queries scored together) every
``--eval-every`` updates. It uses the torch backend's public stateful API: a clone's
``inner_state`` is set before adapting and read afterwards.

    python benchmarks/reptile_adam_moments.py --root path/to/omniglot --moments fresh carried

Writes ``benchmarks/results/reptile_adam_moments.json`` (``--json``): one row per evaluation.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from l2l_multi.backends.torch.algorithms._reptile import inner_batches

import l2l_multi as l2l
from l2l_multi.data import partition_task_batch
from l2l_multi.vision.benchmarks import get_tasksets

HERE = Path(__file__).resolve().parent
WAYS, TRAIN_SHOTS, INNER_BATCH, INNER_STEPS, TEST_STEPS, META_BATCH, LR = 5, 10, 10, 5, 50, 5, 1e-3
PAPER_UPDATES = 100_000  # the meta-step anneals linearly from 1 to 0 over these


def adapt(reptile, x, y, steps, batch_size, state):
    """A clone adapted with ``steps`` inner steps from inner-optimizer ``state`` (None: fresh);
    returns ``(learner, its state after the steps)``."""
    learner = reptile.clone()
    learner.inner_state = state
    for batch_x, batch_y in inner_batches(x, y, batch_size, steps):  # the library's minibatch rule
        learner.adapt(F.cross_entropy(learner(batch_x), batch_y))
    return learner, learner.inner_state


def validate(reptile, tasks, num_tasks, state):
    """Mean 5-way 1-shot accuracy over the first ``num_tasks`` validation tasks; ``state`` is
    each task's starting inner state and is not changed."""
    saved = tasks.state_dict()
    tasks.restart()
    data, labels = tasks.sample_batch(num_tasks)
    tasks.load_state_dict(saved)
    (sx, sy), (qx, qy) = partition_task_batch(data, labels, shots=1)
    correct = []
    for task in range(num_tasks):
        support_x, support_y = torch.as_tensor(sx[task]), torch.as_tensor(sy[task])
        learner, _ = adapt(reptile, support_x, support_y, TEST_STEPS, INNER_BATCH, state)
        with torch.no_grad():
            predictions = learner(torch.as_tensor(qx[task])).argmax(-1)
        correct.append((predictions == torch.as_tensor(qy[task])).float().mean().item())
    return float(np.mean(correct))


def train(moments, args):
    """Rows ``{moments, iteration, valid_accuracy, seconds}`` of one training run."""
    torch.manual_seed(args.seed)
    tasksets = get_tasksets(
        "omniglot",
        train_ways=WAYS,
        train_samples=TRAIN_SHOTS + 1,
        test_ways=WAYS,
        test_samples=2,
        root=args.root,
        seed=args.seed,
        train_splits=("train",),
    )
    model = l2l.vision.models.OmniglotCNN(WAYS)
    reptile = l2l.algorithms.Reptile(model, inner=l2l.transforms.adam(LR, b1=0.0))
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    state, rows, began = None, [], time.perf_counter()
    for iteration in range(args.iterations):
        optimizer.param_groups[0]["lr"] = 1.0 - iteration / PAPER_UPDATES
        (sx, sy), _ = partition_task_batch(*tasksets.train.sample_batch(META_BATCH), shots=TRAIN_SHOTS)
        optimizer.zero_grad()
        for task in range(META_BATCH):  # in order: a carried state passes from task to task
            start = state if moments == "carried" else None
            x, y = torch.as_tensor(sx[task]), torch.as_tensor(sy[task])
            learner, state = adapt(reptile, x, y, INNER_STEPS, INNER_BATCH, start)
            reptile.accumulate(learner, weight=1.0 / META_BATCH)
        optimizer.step()
        if (iteration + 1) % args.eval_every == 0:
            start = state if moments == "carried" else None
            accuracy = validate(reptile, tasksets.validation, args.eval_tasks, start)
            row = {
                "moments": moments,
                "iteration": iteration + 1,
                "valid_accuracy": round(accuracy, 4),
                "seconds": round(time.perf_counter() - began, 1),
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="the Omniglot folder")
    parser.add_argument("--moments", nargs="+", choices=("fresh", "carried"), default=["fresh", "carried"])
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--eval-every", type=int, default=1000)
    parser.add_argument("--eval-tasks", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "reptile_adam_moments.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    l2l.set_backend("torch")
    rows = [row for moments in args.moments for row in train(moments, args)]
    settings = {**vars(args), "json": str(args.json)}
    args.json.write_text(json.dumps({"settings": settings, "rows": rows}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
