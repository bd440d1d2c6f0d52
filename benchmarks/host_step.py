"""Host time per MAML meta-step on Omniglot 5-way 1-shot, before and after the on-device task
pipeline (``l2l_multi.data.DeviceTasks``, the few-shot driver's ``--tasks-on-device``), for each
backend.

Per meta-batch of ``--meta-batch`` tasks (Vinyals' split with rotations, 28x28, ``--queries``
query samples per class), three phases are timed separately:

* ``sampling``: host path ``TaskDataset.sample_batch`` (the Cython plan, then the gather, the
  rotation and the conversion to float32 on the host) and ``partition_task_batch`` (support and
  query sets), as the driver does without ``--tasks-on-device``, against the device path's index
  plan alone (the same Cython plan: rows, labels, quarter turns);
* ``transfer``: host path: the four arrays converted to the backend's arrays on ``--device``
  (``MetaLearner``'s conversion); device path: ``DeviceTasks.split`` (the plan reordered on the
  host into support and query, sent, the batch gathered, rotated and scaled there and cut; the
  host's share of it, ``support_query_order``, is also timed alone);
* ``step``: ``MetaLearner.train_step`` (conv4, second order; ``--steps-too``; several seconds per
  step on a CPU), the same on both paths.

Each phase is repeated ``--repeats`` times in rounds (host path, device path in turn, so both see
the same machine load) and reported as medians in milliseconds. The tasks of both paths are
identical (tests/test_device_pipeline.py). On a CPU "device" the transfer is a copy; on a GPU
(``--device cuda`` for torch; jax uses its default device) it crosses PCIe.

Run from the repository root:

    python benchmarks/host_step.py --root path/to/omniglot --backend torch
    python benchmarks/host_step.py --root path/to/omniglot --backend jax --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time


def _now(sync=None) -> float:
    if sync is not None:
        sync()
    return time.perf_counter()


def _synchronizer(backend: str, device: str | None):
    if backend == "torch" and device and device.startswith("cuda"):
        import torch

        return torch.cuda.synchronize
    return None


def _ready(backend: str, arrays) -> None:
    if backend == "jax":
        import jax

        jax.block_until_ready(arrays)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="folder holding the Omniglot archives")
    parser.add_argument("--backend", choices=("torch", "jax"), default="torch")
    parser.add_argument("--device", default=None, help="torch device (jax: its default device)")
    parser.add_argument("--meta-batch", type=int, default=32)
    parser.add_argument("--queries", type=int, default=1, help="query samples per class")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--steps-too", action="store_true", help="also time train_step (slow on a CPU)")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args(argv)

    import l2l_multi as l2l
    from l2l_multi.data import DeviceTasks, partition_task_batch
    from l2l_multi.data._device_tasks import support_query_order
    from l2l_multi.vision.benchmarks import get_tasksets

    def tasksets():
        return get_tasksets(
            "omniglot",
            train_ways=5,
            train_samples=1 + args.queries,
            test_ways=5,
            test_samples=1 + args.queries,
            root=args.root,
            seed=0,
        )

    host_tasks = tasksets().train
    device_tasks = DeviceTasks(tasksets().train, args.backend, device=args.device)
    options = {"device": args.device} if args.backend == "torch" and args.device else {}
    learner = l2l.MetaLearner("maml", "omniglot-cnn", 5, backend=args.backend, **options)
    sync = _synchronizer(args.backend, args.device)
    times: dict[str, list[float]] = {}

    def record(name, seconds):
        times.setdefault(name, []).append(1000 * seconds)

    for round_ in range(args.repeats + 1):  # round 0 warms up (compiles, allocates)
        t0 = _now(sync)
        (sx, sy), (qx, qy) = partition_task_batch(*host_tasks.sample_batch(args.meta_batch), shots=1)
        t1 = _now(sync)
        batch = learner._impl.convert(sx, sy, qx, qy)
        _ready(args.backend, batch)
        t2 = _now(sync)
        plan = device_tasks.index_plan(args.meta_batch)
        t3 = _now(sync)
        (sx, sy), (qx, qy) = device_tasks.split(plan, shots=1)
        _ready(args.backend, (sx, sy, qx, qy))
        t4 = _now(sync)
        support_query_order(plan["labels"], 1)  # the host's share of the split, timed alone
        t5 = _now()
        if round_:
            record("host path: sampling", t1 - t0)
            record("host path: transfer", t2 - t1)
            record("device path: sampling (index plan)", t3 - t2)
            record("device path: split, transfer and gather", t4 - t3)
            record("device path: host share of the split", t5 - t4)
        if args.steps_too and round_ < 4:  # a few steps: seconds each on a CPU
            t6 = _now(sync)
            learner.train_step(sx, sy, qx, qy)
            t7 = _now(sync)
            if round_:
                record("step (train_step)", t7 - t6)
    medians = {name: round(statistics.median(values), 3) for name, values in times.items()}
    medians["host path: sampling + transfer"] = round(
        medians["host path: sampling"] + medians["host path: transfer"], 3
    )
    medians["device path: sampling + transfer"] = round(
        medians["device path: sampling (index plan)"] + medians["device path: split, transfer and gather"], 3
    )
    report = {
        "backend": args.backend,
        "device": args.device or "default",
        "machine": platform.processor() or platform.machine(),
        "meta_batch": args.meta_batch,
        "queries": args.queries,
        "repeats": args.repeats,
        "median_ms": medians,
    }
    for name, value in medians.items():
        print(f"{name:40s} {value:9.3f} ms")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(report, stream, indent=2)
    return report


if __name__ == "__main__":
    main()
