"""Task-sampling throughput on learn2learn's own usage, side by side with the real learn2learn 0.2.0.

The workload is the one learn2learn's users write: Omniglot-sized tensors (1623 classes x 20
samples, 1x28x28 float32, int64 labels) in a ``torch.utils.data.TensorDataset`` wrapped in a
``MetaDataset``, tasks made by ``FusedNWaysKShots, LoadData, RemapLabels, ConsecutiveLabels`` and
drawn with ``sample()``, at 5-way 1-shot and 20-way 5-shot, in one thread. Rows:

* ``learn2learn 0.2.0``: exactly that, with learn2learn (tasks come out as torch tensors);
* ``l2l_multi, TensorDataset``: the same code with ``import l2l_multi as l2l`` (``backend="torch"``,
  torch tensors out);
* ``l2l_multi, numpy arrays``: the same tensors as numpy arrays in an ``ArrayDataset`` (torch out);
* ``l2l_multi, TensorDataset, sample_batch(32)``: 32 stacked tasks per call, counted per task;
* with ``--previous-checkout DIR``, ``l2l_multi <label>, ...``: the TensorDataset and numpy rows
  imported from another checkout (e.g. ``git worktree add DIR <commit>``, its extension built
  there with ``python setup.py build_ext --inplace``), for before/after figures. Only the
  ``l2l_multi`` package comes from DIR: the backends still come from the installed checkout.

Each implementation runs in its own worker process (learn2learn lives in another environment:
``--learn2learn-python`` names its interpreter). The coordinator warms every row up, sizes its
runs to about ``--seconds`` each, then times the rows round-robin, ``--repeats`` times, so every
row sees the same machine load; it reports medians and each row's ratio to learn2learn.

Installing learn2learn 0.2.0 beside torch 2.13 on Python 3.11 (about two minutes): a fresh
virtual environment with ``torch==2.13.0`` (CPU), numpy, scipy, gym, qpth, tqdm, requests and
pillow; ``torchvision==0.28.0`` installed with ``--no-deps`` and its ``__init__.py`` edited to
import its ``_meta_registrations`` / ``_autograd_registrations`` only when its compiled operators
load (they do not beside the CPU torch); then learn2learn's sdist (``pip download --no-binary
:all: learn2learn==0.2.0``) with its generated ``learn2learn/data/*.c`` deleted and regenerated
by Cython 3 (``cython -3`` on ``meta_dataset.pyx``, ``task_dataset.pyx``, ``transforms.pyx``:
the shipped C files do not compile for Python 3.11), installed with ``pip install --no-deps
--no-build-isolation .``.

Run from the repository root:

    python benchmarks/data_sampling.py --learn2learn-python PATH/TO/l2l-venv/bin/python
    python benchmarks/data_sampling.py --quick            # smoke test; learn2learn row if given
    python benchmarks/data_sampling.py ... --json out.json --markdown out.md
"""

import os

# BLAS/OpenMP pools would only add noise to a single-threaded measurement (workers inherit it)
os.environ["OMP_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

SETTINGS = [(5, 1), (20, 5)]
LEARN2LEARN = "learn2learn 0.2.0"
BATCH = 32


# -- the workload, built the same way in every worker -------------------------------------------
def omniglot_sized_tensors():
    """``(x float32[32460, 1, 28, 28], y int64[32460])`` torch tensors, fixed by seed 0."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    x = rng.random((1623 * 20, 1, 28, 28), dtype=np.float32)
    y = np.repeat(np.arange(1623, dtype=np.int64), 20)
    return torch.from_numpy(x), torch.from_numpy(y)


def learn2learn_rows(ways, shots):
    """``{row name: callable building tasks, returning how many}`` for learn2learn."""
    import random

    import learn2learn as l2l
    import torch

    random.seed(0)
    x, y = omniglot_sized_tensors()
    dataset = l2l.data.MetaDataset(torch.utils.data.TensorDataset(x, y))
    t = l2l.data.transforms
    tasks = l2l.data.TaskDataset(
        dataset,
        [
            t.FusedNWaysKShots(dataset, ways, shots),
            t.LoadData(dataset),
            t.RemapLabels(dataset),
            t.ConsecutiveLabels(dataset),
        ],
    )
    return {LEARN2LEARN: lambda: (tasks.sample(), 1)[1]}


def l2l_multi_rows(ways, shots, label=None):
    """The l2l_multi rows (for another checkout, named with ``label``, without sample_batch)."""
    import torch

    import l2l_multi as l2l

    x, y = omniglot_sized_tensors()

    def taskset(data, **options):
        dataset = l2l.data.MetaDataset(data)
        t = l2l.data.transforms
        return l2l.data.TaskDataset(
            dataset,
            [
                t.FusedNWaysKShots(dataset, ways, shots),
                t.LoadData(dataset),
                t.RemapLabels(dataset),
                t.ConsecutiveLabels(dataset),
            ],
            backend="torch",
            seed=0,
            **options,
        )

    tensors = taskset(torch.utils.data.TensorDataset(x, y))
    arrays = taskset(l2l.data.ArrayDataset(x.numpy(), y.numpy()))
    name = "l2l_multi" if label is None else f"l2l_multi {label}"
    rows = {
        f"{name}, TensorDataset": lambda: (tensors.sample(), 1)[1],
        f"{name}, numpy arrays": lambda: (arrays.sample(), 1)[1],
    }
    if label is None:
        batched = taskset(torch.utils.data.TensorDataset(x, y))
        rows[f"{name}, TensorDataset, sample_batch({BATCH})"] = lambda: (batched.sample_batch(BATCH), BATCH)[
            1
        ]
    return rows


def worker(kind: str, label: str | None) -> None:
    """Serve timing requests on stdin/stdout, one JSON object per line.

    ``{"setup": [ways, shots], "warmup_s": s}`` builds and warms the rows and answers
    ``{"rows": {name: seconds per task}}``; ``{"time": name, "tasks": n}`` answers
    ``{"rate": tasks per second}``; end of input stops the worker.
    """
    rows = {}
    for line in sys.stdin:
        request = json.loads(line)
        if "setup" in request:
            ways, shots = request["setup"]
            if kind == "learn2learn":
                rows = learn2learn_rows(ways, shots)
            else:
                rows = l2l_multi_rows(ways, shots, label)
            answer = {"rows": {name: _warm_up(build, request["warmup_s"]) for name, build in rows.items()}}
        else:
            build, tasks, built = rows[request["time"]], request["tasks"], 0
            start = time.perf_counter()
            while built < tasks:
                built += build()
            answer = {"rate": built / (time.perf_counter() - start)}
        print(json.dumps(answer), flush=True)


def _warm_up(build, seconds: float) -> float:
    start, built = time.perf_counter(), 0
    while built < 20 or time.perf_counter() - start < seconds:
        built += build()
    return (time.perf_counter() - start) / built


# -- the coordinator ------------------------------------------------------------------------------
class Worker:
    """A worker process and its request/answer pipe."""

    def __init__(self, python: str, kind: str, label: str | None = None, path: str | None = None):
        command = [python, os.path.abspath(__file__), "--worker", kind]
        if label:
            command += ["--label", label]
        env = dict(os.environ)
        if path:
            env["PYTHONPATH"] = os.pathsep.join([path, env.get("PYTHONPATH", "")])
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=path or os.getcwd(),
        )

    def ask(self, request: dict) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"a benchmark worker ({self.process.args[-1]}) stopped; see its stderr above")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def run(workers: list, repeats: int, seconds: float) -> dict:
    """``{setting: {row: {"tasks_per_s", "tasks_per_repeat", "repeat_rates"}}}``."""
    results = {}
    for ways, shots in SETTINGS:
        setting = f"{ways}-way {shots}-shot"
        rows = []  # (worker, row name, tasks per timed run)
        for process in workers:
            per_task = process.ask({"setup": [ways, shots], "warmup_s": seconds / 3})["rows"]
            rows += [(process, name, max(10, round(seconds / s))) for name, s in per_task.items()]
        rates = {name: [] for _, name, _ in rows}
        for _ in range(repeats):  # round-robin: every row sees the same load
            for process, name, tasks in rows:
                rates[name].append(process.ask({"time": name, "tasks": tasks})["rate"])
        results[setting] = {
            name: {
                "tasks_per_s": statistics.median(rates[name]),
                "tasks_per_repeat": tasks,
                "repeat_rates": rates[name],
            }
            for _, name, tasks in rows
        }
    return results


def markdown_table(results: dict) -> str:
    rows = list(next(iter(results.values())))
    header = ["implementation"]
    for setting in results:
        header += [f"{setting} tasks/s"] + (["vs learn2learn"] if LEARN2LEARN in rows else [])
    lines = [header]
    for row in rows:
        cells = [row]
        for table in results.values():
            rate = table[row]["tasks_per_s"]
            cells.append(f"{rate:,.0f}")
            if LEARN2LEARN in rows:
                cells.append(f"{rate / table[LEARN2LEARN]['tasks_per_s']:.1f}x")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for number, line in enumerate(lines):
        padded = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)]
        out.append("| " + " | ".join(padded) + " |")
        if number == 0:
            rule = ("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths))
            out.append("|" + "|".join(rule) + "|")
    return "\n".join(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--learn2learn-python",
        metavar="PATH",
        help="a Python that imports learn2learn 0.2.0 (without it, its row is left out)",
    )
    parser.add_argument(
        "--previous-checkout",
        metavar="DIR",
        help="also time l2l_multi imported from DIR (another checkout, extension built)",
    )
    parser.add_argument("--previous-label", default="previous", help="its row's label (default: previous)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed runs per row (default 7, 2 with --quick)"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="length of one timed run (default 0.5 s, 0.05 s with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="short runs, for a smoke test")
    parser.add_argument("--json", metavar="PATH", help="also write the results to PATH")
    parser.add_argument("--markdown", metavar="PATH", help="also write the table to PATH")
    parser.add_argument("--worker", choices=["learn2learn", "l2l_multi"], help=argparse.SUPPRESS)
    parser.add_argument("--label", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.label)
    repeats = args.repeats or (2 if args.quick else 7)
    seconds = args.seconds or (0.05 if args.quick else 0.5)
    if repeats < 1 or seconds <= 0:
        parser.error("--repeats must be at least 1 and --seconds positive")

    workers = [Worker(sys.executable, "l2l_multi")]
    if args.previous_checkout:
        workers.append(
            Worker(sys.executable, "l2l_multi", args.previous_label, os.path.abspath(args.previous_checkout))
        )
    if args.learn2learn_python:
        workers.append(Worker(args.learn2learn_python, "learn2learn"))
    else:
        print("learn2learn row left out: pass --learn2learn-python PATH")
    try:
        results = run(workers, repeats, seconds)
    finally:
        for process in workers:
            process.close()
    import numpy as np
    import torch

    description = (
        f"Omniglot-sized TensorDataset (1623 classes x 20, 1x28x28 float32), FusedNWaysKShots, "
        f"LoadData, RemapLabels, ConsecutiveLabels, sample(); medians of {repeats} round-robin "
        f"runs of about {seconds} s; Python {platform.python_version()}, torch "
        f"{torch.__version__}, numpy {np.__version__}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, 1 thread each"
    )
    table = markdown_table(results)
    print(description + "\n\n" + table)
    if args.markdown:
        with open(args.markdown, "w") as file:
            file.write(description + "\n\n" + table + "\n")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(
                {
                    "description": description,
                    "python": platform.python_version(),
                    "torch": torch.__version__,
                    "numpy": np.__version__,
                    "machine": platform.machine(),
                    "cpus": os.cpu_count(),
                    "repeats": repeats,
                    "seconds": seconds,
                    "quick": args.quick,
                    "results": results,
                },
                file,
                indent=2,
            )
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main(sys.argv[1:])
