"""Task-sampling throughput of the l2l_multi data layer, against a learn2learn-style baseline.

Measures tasks per second on an Omniglot-sized dataset held in memory: an ``ArrayDataset`` of
1623 classes x 20 samples of random uint8 28x28 images, for 5-way 1-shot and 20-way 5-shot tasks,
with the pipeline ``NWays, KShots, LoadData, RemapLabels, ConsecutiveLabels`` collated to numpy.
Rows:

* compiled kernels: ``sample_batch(32)`` (stacked tasks, for vmap), ``sample()`` (this standard
  chain takes the fused fast path of ``_plan.py``), the same starting with ``FusedNWaysKShots``,
  and ``sample()`` with the fast path switched off (every transform runs in Python);
* the same with the pure-Python kernels (``set_kernel_mode("python")``);
* a learn2learn-style baseline (``_l2l_style_baseline.py``): a small reimplementation of how
  learn2learn 0.2.0 builds tasks, one object and closure list per sample;
* the real learn2learn, when it imports (otherwise one line says why it was skipped).

Each cell is warmed up, then timed over ``--repeats`` runs of N tasks (N chosen so that a run
takes about half a second); the median rate is reported, with its ratio to the baseline.
Everything runs in one thread, so the numbers measure per-task overhead, not parallelism.

Run from the repository root:

    python benchmarks/data_sampling.py                 # full run, about half a minute
    python benchmarks/data_sampling.py --quick         # smoke test, a few seconds
    python benchmarks/data_sampling.py --json out.json # also write the results as JSON
"""

import os

# BLAS/OpenMP pools would only add noise to a single-threaded measurement
os.environ["OMP_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import _l2l_style_baseline as baseline  # noqa: E402
import numpy as np  # noqa: E402

import l2l_multi.data as l2d  # noqa: E402
from l2l_multi.data.transforms import (  # noqa: E402
    ConsecutiveLabels,
    FusedNWaysKShots,
    KShots,
    LoadData,
    NWays,
    RemapLabels,
)

SETTINGS = [(5, 1), (20, 5)]
BASELINE = "learn2learn-style baseline"


def omniglot_sized(seed: int = 0) -> l2d.ArrayDataset:
    rng = np.random.default_rng(seed)
    inputs = rng.integers(0, 256, size=(1623 * 20, 28, 28), dtype=np.uint8)
    return l2d.ArrayDataset(inputs, np.repeat(np.arange(1623, dtype=np.int64), 20))


def l2l_multi_sampler(meta, ways, shots, fused=False, path="sample", batch=32):
    """A zero-argument callable building tasks; returns how many it built.

    ``path``: "sample" (``sample()``, fast path for this standard chain), "general" (``sample()``
    with the fast path switched off: every transform runs), "batch" (``sample_batch(batch)``).
    """
    head = [FusedNWaysKShots(meta, ways, shots)] if fused else [NWays(meta, ways),
                                                                 KShots(meta, shots)]
    tail = [LoadData(meta), RemapLabels(meta), ConsecutiveLabels(meta)]
    tasks = l2d.TaskDataset(meta, head + tail, backend="numpy", seed=0)
    if path == "general":
        tasks._plan = None
    if path == "batch":
        return lambda: (tasks.sample_batch(batch), batch)[1]
    return lambda: (tasks.sample(), 1)[1]


def baseline_sampler(data, ways, shots):
    meta = baseline.MetaDataset(data)
    transforms = [baseline.NWays(meta, ways), baseline.KShots(meta, shots),
                  baseline.LoadData(meta), baseline.RemapLabels(meta),
                  baseline.ConsecutiveLabels(meta)]
    tasks = baseline.TaskDataset(meta, transforms, seed=0)
    return lambda: (tasks.sample(), 1)[1]


def learn2learn_factory():
    """``(make_sampler, None)`` when learn2learn imports, else ``(None, why not)``."""
    try:
        import learn2learn
    except Exception as error:  # its import chain (torchvision) can fail with any error
        return None, f"{type(error).__name__}: {error}"

    def make(data, ways, shots):
        import random

        random.seed(0)
        meta = learn2learn.data.MetaDataset(data)
        t = learn2learn.data.transforms
        transforms = [t.NWays(meta, ways), t.KShots(meta, shots), t.LoadData(meta),
                      t.RemapLabels(meta), t.ConsecutiveLabels(meta)]
        # the same numpy collate as the baseline, so only task building differs
        tasks = learn2learn.data.TaskDataset(meta, transforms, task_collate=baseline.numpy_collate)
        return lambda: (tasks.sample(), 1)[1]

    return make, None


def measure(build, repeats: int, target_s: float) -> dict:
    """Median tasks/s over ``repeats`` timed runs, after a warm-up that also sizes the runs."""
    warmup_start = time.perf_counter()
    warmed = 0
    while warmed < 20 or time.perf_counter() - warmup_start < target_s / 5:
        warmed += build()
    per_task = (time.perf_counter() - warmup_start) / warmed
    tasks = max(10, round(target_s / per_task))
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        built = 0
        while built < tasks:
            built += build()
        rates.append(built / (time.perf_counter() - start))
    return {"tasks_per_s": statistics.median(rates), "tasks_per_repeat": tasks,
            "repeat_rates": rates}


def check_modes_agree(meta) -> None:
    # a benchmark of two kernel modes is only meaningful if they build the same tasks
    tasks = {}
    for mode in ("compiled", "python"):
        l2d.set_kernel_mode(mode)
        sampler = l2d.TaskDataset(meta, [NWays(meta, 20), KShots(meta, 5), LoadData(meta),
                                         RemapLabels(meta), ConsecutiveLabels(meta)],
                                  backend="numpy", seed=0)
        tasks[mode] = [sampler.sample() for _ in range(3)]
    for (xc, yc), (xp, yp) in zip(tasks["compiled"], tasks["python"], strict=True):
        if not (np.array_equal(xc, xp) and np.array_equal(yc, yp)):
            raise SystemExit("compiled and python kernels built different tasks for seed 0")


def markdown_table(results: dict, rows: list) -> str:
    header = ["pipeline"]
    for ways, shots in SETTINGS:
        header += [f"{ways}-way {shots}-shot tasks/s", "vs baseline"]
    lines = [header]
    for row in rows:
        cells = [row]
        for setting in results:
            rate = results[setting][row]["tasks_per_s"]
            cells += [f"{rate:,.0f}", f"{rate / results[setting][BASELINE]['tasks_per_s']:.1f}x"]
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for number, line in enumerate(lines):
        padded = [line[0].ljust(widths[0])]
        padded += [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        out.append("| " + " | ".join(padded) + " |")
        if number == 0:
            out.append("|" + "|".join("-" * (w + 1) + (":" if i else "-")
                                      for i, w in enumerate(widths)) + "|")
    return "\n".join(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs per cell (default 5, or 2 with --quick)")
    parser.add_argument("--quick", action="store_true", help="short runs, for a smoke test")
    parser.add_argument("--json", metavar="PATH", help="also write the results to PATH")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    if repeats < 1:
        parser.error("--repeats must be at least 1")
    target_s = 0.05 if args.quick else 0.5

    data = omniglot_sized()
    meta = l2d.MetaDataset(data)
    initial_mode = l2d.kernel_mode()
    samplers = []  # (row name, kernel mode or None, make(ways, shots) -> sample)
    if l2d.compiled_available():
        check_modes_agree(meta)
        samplers += [
            ("l2l_multi compiled, sample_batch(32)", "compiled",
             lambda w, s: l2l_multi_sampler(meta, w, s, path="batch")),
            ("l2l_multi compiled, sample()", "compiled",
             lambda w, s: l2l_multi_sampler(meta, w, s)),
            ("l2l_multi compiled, sample(), FusedNWaysKShots", "compiled",
             lambda w, s: l2l_multi_sampler(meta, w, s, fused=True)),
            ("l2l_multi compiled, sample(), no fast path", "compiled",
             lambda w, s: l2l_multi_sampler(meta, w, s, path="general")),
        ]
    else:
        print("compiled rows skipped: l2l_multi's compiled kernels are not built")
    samplers += [
        ("l2l_multi pure-Python, sample_batch(32)", "python",
         lambda w, s: l2l_multi_sampler(meta, w, s, path="batch")),
        ("l2l_multi pure-Python, sample()", "python", lambda w, s: l2l_multi_sampler(meta, w, s)),
        ("l2l_multi pure-Python, sample(), no fast path", "python",
         lambda w, s: l2l_multi_sampler(meta, w, s, path="general")),
        (BASELINE, None, lambda w, s: baseline_sampler(data, w, s)),
    ]
    make_learn2learn, skipped = learn2learn_factory()
    if make_learn2learn is None:
        print(f"learn2learn row skipped: `import learn2learn` failed ({skipped})")
    else:
        samplers.append(("learn2learn 0.2.0", None, lambda w, s: make_learn2learn(data, w, s)))

    results = {}
    for ways, shots in SETTINGS:
        setting = f"{ways}-way {shots}-shot"
        results[setting] = {}
        for name, mode, make in samplers:
            if mode is not None:
                l2d.set_kernel_mode(mode)
            results[setting][name] = measure(make(ways, shots), repeats, target_s)
    l2d.set_kernel_mode(initial_mode)

    print(f"Omniglot-sized ArrayDataset (1623 classes x 20 uint8 28x28), numpy collate; "
          f"median of {repeats} runs; Python {platform.python_version()}, numpy "
          f"{np.__version__}, {platform.machine()}, 1 thread\n")
    print(markdown_table(results, [name for name, _, _ in samplers]))
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"python": platform.python_version(), "numpy": np.__version__,
                       "machine": platform.machine(), "repeats": repeats, "quick": args.quick,
                       "learn2learn_skipped": skipped, "results": results}, file, indent=2)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main(sys.argv[1:])
