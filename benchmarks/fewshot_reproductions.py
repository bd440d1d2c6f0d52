"""Starts, resumes or times the planned Omniglot reproductions (issue 19): one results folder per run.

Each planned run is an example script with the paper's settings, written to
``benchmarks/results/<name>/``. For each folder this script decides, as ``rl_reproductions.py`` does:
``done`` (results.json written), ``running`` (another process holds the folder's lock), ``resume``
(a checkpoint exists: ``--resume --out DIR``) or ``start`` (the full command). Runs are niced and log
to ``<folder>/log.txt``; the examples checkpoint at every validation, so a run stopped anywhere
loses at most ``--eval-every`` updates and continues where it stopped.

    python benchmarks/fewshot_reproductions.py --root path/to/omniglot --dry-run
    python benchmarks/fewshot_reproductions.py --root path/to/omniglot --only protonet_omniglot_60w1s_pool_jax
    python benchmarks/fewshot_reproductions.py --root path/to/omniglot --measure 20   # seconds per update
    python benchmarks/reproductions.py             # then regenerate REPRODUCTIONS.md

``--measure N`` trains each chosen run for N updates in a temporary folder (validating every N/2 on
2 tasks) and records the seconds per update between the two validations, compilation excluded, in
``benchmarks/results/fewshot_costs.json``; REPRODUCTIONS.md turns them into the time each planned run
would take on that device.
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:  # benchmarks/ is no package; its runners share _runner.py
    sys.path.insert(0, str(HERE))
from _runner import locked, start_all, time_updates  # noqa: E402

RESULTS = HERE / "results"
COSTS = RESULTS / "fewshot_costs.json"
ROOT_PLACEHOLDER = "path/to/omniglot"

# MAML's code steps 0.1 on the support loss summed over samples / shots (20 x the mean at 20 ways)
MAML_20WAY = "--ways 20 --lr 2.0 --adaptation-steps 5 --test-adaptation-steps 5 --meta-batch 16"


class PlannedRun(NamedTuple):
    """One planned reproduction: ``script`` (under examples/vision/) with ``arguments`` (the paper's
    settings, ``--root``/``--out`` aside), reproducing the test ``settings`` of the script's paper
    table; ``why`` says what the row shows; ``finding``, once the run has ended, what it found
    beyond its numbers (a shortfall's measured cause), printed under the table."""

    name: str
    script: str
    arguments: str
    settings: tuple[str, ...]
    why: str
    finding: str = ""

    @property
    def folder(self) -> Path:
        return RESULTS / self.name

    def iterations(self) -> int:
        """Planned meta-updates: ``--iterations`` when given, else the script's default."""
        words = shlex.split(self.arguments)
        if "--iterations" in words:
            return int(words[words.index("--iterations") + 1])
        return int(script_defaults(self.script)["iterations"])

    def command(self, root: str = ROOT_PLACEHOLDER) -> str:
        """The command that starts the run from scratch (with ``root`` as the Omniglot folder)."""
        out = self.folder.relative_to(ROOT) if self.folder.is_relative_to(ROOT) else self.folder
        return (
            f"python examples/vision/{self.script}.py {self.arguments} --root {shlex.quote(str(root))} "
            f"--out {out} --no-progress"
        ).replace("  ", " ")


def _paper(name: str, script: str, arguments: str, *settings: str) -> PlannedRun:
    """A run of the paper's settings for ``settings``."""
    return PlannedRun(name, script, arguments, settings, "the paper's settings")


JAX = "--backend jax"
# Nichol et al.'s 5-way Omniglot commands train alike for 1 and 5 test shots: one run, four rows
REPTILE_WHY = (
    "the paper's settings, one training run for both test shots, with one inner Adam whose moments pass "
    "from task to task as in its code (--inner-state carried); with fresh moments per task validation "
    "stayed at 78-81% over updates 2,000-14,500 (run stopped, kept as reptile_omniglot_5w_fresh_adam_jax)"
)
REPTILE_FINDING = (
    "retested on 3,000 test tasks (a copy of the finished folder resumed with `--test-tasks 3000 "
    "--test-protocol transductive` and `non-transductive`; results in the run folder's "
    "`test3000_transductive.json` and `test3000_non_transductive.json`), only 5w1s still reaches the "
    "paper: 97.53 ± 0.26 (5w1s; paper 97.68), 99.24 ± 0.15 (5w5s; paper 99.48), 94.89 ± 0.35 (5w1s "
    "non-transductive; paper 95.39), 98.01 ± 0.22 (5w5s non-transductive; paper 98.90), so the "
    "600-task figures above were favourable draws. One setting still differs from the paper's code and "
    "acts through batch norm: inner batches are taken in class-interleaved order (each training batch "
    "of 10 holds 2 samples of each class; with 5 test shots each batch of 5 holds one of each, the same "
    "5 batches in turn), where the paper draws them at random without replacement. Its test-time share, "
    "measured: the same model tested on the same 3,000 tasks with the paper's random test batches "
    "(`--test-inner-order shuffled`; `test3000_shuffled_test_batches.json`) scores 98.59 ± 0.20 (5w5s; "
    "paper 99.48) and 97.22 ± 0.27 (5w5s non-transductive; paper 98.90), lower, and the 1-shot figures "
    "are unchanged (a batch of 5 is the whole support set): for a model trained on interleaved batches "
    "the test-time order does not close the gap. Trained on the paper's random batches "
    "(`reptile_omniglot_5w_shuffled_jax`, same seed and tasks), all four settings reach the paper on the "
    "600 tasks, 5w5s non-transductive included (98.77 ± 0.42; paper 98.90): the training-time order is "
    "the likely cause, not yet retested on 3,000 tasks."
)
# the first 600 test tasks (the table's protocol) are the same draw for every run: retests on 3,000
RETESTED = (
    "retested on 3,000 test tasks (a copy of the finished folder resumed with `--test-tasks 3000`; "
    "results in the run folder's `test3000.json`): "
)
NON_TRANSDUCTIVE = " non-transductive"  # results keys of the other test protocols (Nichol et al.;
RUNNING = " running-statistics"  # Snell et al.'s model.eval())
PLANNED = (
    _paper("maml_omniglot_5w5s_jax", "maml_omniglot", f"{JAX} --shots 5", "5w5s"),
    _paper("maml_omniglot_20w1s_jax", "maml_omniglot", f"{JAX} {MAML_20WAY}", "20w1s"),
    _paper("maml_omniglot_20w5s_jax", "maml_omniglot", f"{JAX} {MAML_20WAY} --shots 5", "20w5s"),
    _paper("fomaml_omniglot_5w1s_jax", "maml_omniglot", f"{JAX} --first-order", "5w1s")._replace(
        finding=RETESTED + "98.42 ± 0.22 (5w1s; paper 98.30), still reached; the first 600 tasks scored "
        "0.18 points higher"
    ),
    _paper("fomaml_omniglot_5w5s_jax", "maml_omniglot", f"{JAX} --first-order --shots 5", "5w5s"),
    _paper("fomaml_omniglot_20w1s_jax", "maml_omniglot", f"{JAX} --first-order {MAML_20WAY}", "20w1s"),
    _paper(
        "fomaml_omniglot_20w5s_jax", "maml_omniglot", f"{JAX} --first-order {MAML_20WAY} --shots 5", "20w5s"
    ),
    PlannedRun(
        "maml_omniglot_5w1s_torch",
        "maml_omniglot",
        "--backend torch --iterations 16000 --eval-every 500 --eval-tasks 200 --eval-batch 100",
        ("5w1s",),
        "the other backend: the 16,000 updates of the jax H100 row",
        RETESTED + "98.15 ± 0.24 (5w1s; paper 98.70), short by 0.30 points beyond the interval, where the "
        "600-task interval reached the paper; the run has 16,000 of the paper's 60,000 meta-updates",
    ),
    _paper("metasgd_omniglot_5w1s_jax", "metasgd_omniglot", JAX, "5w1s"),
    # Li et al. follow MAML's protocol; the 20-way meta-batch is MAML's (16)
    _paper("metasgd_omniglot_20w1s_jax", "metasgd_omniglot", f"{JAX} --ways 20 --meta-batch 16", "20w1s"),
    _paper("anil_omniglot_20w1s_jax", "anil_omniglot", JAX, "20w1s"),  # Raghu et al. report 20-way only
    # Nichol et al.'s Omniglot settings are reptile_omniglot.py's defaults (Adam 1e-3 on batches of 10
    # from 10 training shots per class, its moments carried from task to task, meta-steps of 1
    # annealed linearly to 0); an earlier run with SGD 0.1 inner steps on the support set and Adam
    # 1e-3 meta-steps lost validation accuracy over its first 6,000 updates (55.5% -> 47.4%)
    PlannedRun(
        "reptile_omniglot_5w_jax",
        "reptile_omniglot",
        JAX,
        ("5w1s", "5w1s" + NON_TRANSDUCTIVE, "5w5s", "5w5s" + NON_TRANSDUCTIVE),
        REPTILE_WHY,
        REPTILE_FINDING,
    ),
    # the same run with the inner batches drawn as the paper's code draws them (REPTILE_FINDING)
    PlannedRun(
        "reptile_omniglot_5w_shuffled_jax",
        "reptile_omniglot",
        f"{JAX} --inner-order shuffled",
        ("5w1s", "5w1s" + NON_TRANSDUCTIVE, "5w5s", "5w5s" + NON_TRANSDUCTIVE),
        "the paper's settings with its code's inner-batch order (--inner-order shuffled: every pass over "
        "a task's samples in a new random order), to test whether the class-interleaved order explains "
        "the settings reptile_omniglot_5w_jax misses",
    ),
    PlannedRun(
        "metaoptnet_omniglot_5w1s_jax",
        "metaoptnet_omniglot",
        f"{JAX} --head svm",
        ("5w1s", "20w1s"),
        "no published number",
    ),
    # Snell et al.'s protocol: running batch-norm statistics, each test image on its own
    PlannedRun(
        "protonet_omniglot_60w1s_running_torch",
        "protonet_omniglot",
        "--batch-norm running",
        ("5w1s" + RUNNING, "20w1s" + RUNNING),
        "the paper's protocol and full schedule (20,000 episodes, lr halved every 2,000)",
    ),
    PlannedRun(
        "protonet_omniglot_60w5s_running_torch",
        "protonet_omniglot",
        "--shots 5 --batch-norm running",
        ("5w5s" + RUNNING, "20w5s" + RUNNING),
        "the paper's protocol and full schedule (20,000 episodes, lr halved every 2,000)",
    ),
    PlannedRun(
        "protonet_omniglot_60w1s_pool_jax",
        "protonet_omniglot",
        f"{JAX} --model omniglot-cnn-pool --iterations 4000 --meta-lr-halve-every 1000 --eval-every 500 "
        "--train-splits train",
        ("5w1s", "20w1s"),
        "the other backend: the settings of the torch row that reached 98.74",
        RETESTED + "98.63 ± 0.09 (5w1s; paper 98.80), short by 0.08 points beyond the interval, where the "
        "600-task interval reached the paper; 95.35 ± 0.09 (20w1s; paper 96.00), short as on 600 tasks "
        "(retested with `--eval-batch 10`: 50 tasks of 20 ways and 15 queries per call took 14.5 GB)",
    ),
)


def script_defaults(script: str) -> dict:
    """The example's ``DEFAULTS`` dict (paper numbers, default iterations)."""
    import runpy

    return runpy.run_path(str(ROOT / "examples" / "vision" / f"{script}.py"))["DEFAULTS"]


def progress(run: PlannedRun) -> int:
    """The last validated (checkpointed) update of ``run``'s folder, 0 when none."""
    return progress_and_time(run)[0]


def progress_and_time(run: PlannedRun) -> tuple[int, float]:
    """``(update, seconds)``: the last validated (checkpointed) update of ``run``'s folder and the
    training time up to it, validations included (``elapsed_s``); ``(0, 0.0)`` when none."""
    metrics = run.folder / "metrics.csv"
    if not metrics.exists():
        return 0, 0.0
    rows = list(csv.DictReader(metrics.open()))
    if not rows:
        return 0, 0.0
    return int(float(rows[-1]["iteration"])), float(rows[-1].get("elapsed_s") or 0.0)


def last_validation(run: PlannedRun) -> tuple[int, float] | None:
    """``(update, accuracy)`` of the last validation in ``run``'s metrics.csv (accuracy in [0, 1];
    the first test setting, on ``--eval-tasks`` validation tasks), or None when there is none."""
    metrics = run.folder / "metrics.csv"
    if not metrics.exists():
        return None
    rows = [row for row in csv.DictReader(metrics.open()) if row.get("valid_accuracy")]
    if not rows:
        return None
    return int(float(rows[-1]["iteration"])), float(rows[-1]["valid_accuracy"])


def plan(run: PlannedRun, root: str) -> tuple[str, list[str] | None]:
    """``(state, argv)``: state ``done``/``running``/``resume``/``start``; argv (after ``python``) is
    None when nothing is to run."""
    folder = run.folder
    if (folder / "results.json").exists():
        return "done", None
    if locked(folder):
        return "running", None
    if (folder / "checkpoint.npz").exists():
        script = f"examples/vision/{run.script}.py"
        out = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder  # runs start in ROOT
        return "resume", [script, "--resume", "--out", str(out), "--root", root, "--no-progress"]
    return "start", shlex.split(run.command(root))[1:]


def measure(run: PlannedRun, root: str, updates: int) -> dict:
    """Seconds per meta-update of ``run``'s settings here: ``updates`` updates in a temporary folder,
    the time between the validations at ``updates // 2`` and ``updates`` (2 tasks each) divided by
    ``updates - updates // 2``; compilation and data loading fall before the first validation."""
    half = max(1, updates // 2)

    def argv_for(scratch: Path) -> tuple[list[str], Path]:
        argv = shlex.split(run.command(root))[1:]
        argv[argv.index("--out") + 1] = str(scratch)
        argv = [word for word in argv if word != "--no-progress"]
        argv += ["--iterations", str(2 * half), "--eval-every", str(half), "--eval-tasks", "2"]
        return argv + ["--test-tasks", "2", "--no-progress"], scratch

    def between_validations(rows: list[dict]) -> tuple[float, int]:
        return float(rows[-1]["elapsed_s"]) - float(rows[-2]["elapsed_s"]), half

    return time_updates(run.name, argv_for, between_validations, ROOT)


def read_costs(path: Path | None = None) -> dict:
    """``{run name: measure()'s dict}`` from ``path`` (default ``COSTS``; {} when absent)."""
    path = COSTS if path is None else path
    return json.loads(path.read_text()) if path.exists() else {}


def main(argv=None) -> list[tuple[str, str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", default=ROOT_PLACEHOLDER, help="the Omniglot folder (as the examples' --root)"
    )
    parser.add_argument("--only", nargs="+", choices=[r.name for r in PLANNED], help="these runs")
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time (>= 1)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and start nothing")
    parser.add_argument("--measure", type=int, default=0, help="time N updates of each chosen run instead")
    args = parser.parse_args(argv)
    if args.parallel < 1:
        parser.error(f"--parallel must be >= 1, got {args.parallel}")
    if args.measure and args.measure < 2:
        parser.error(f"--measure must be >= 2 updates, got {args.measure}")
    chosen = [run for run in PLANNED if not args.only or run.name in args.only]
    if args.measure:
        costs = read_costs()
        for run in chosen:
            costs[run.name] = measure(run, args.root, args.measure)
            print(f"{run.name}: {costs[run.name]['seconds_per_update']} s per update", flush=True)
            COSTS.write_text(json.dumps(costs, indent=2, sort_keys=True) + "\n")
        return [(run.name, "measured") for run in chosen]
    report, queue = [], []
    for run in chosen:
        state, run_argv = plan(run, args.root)
        report.append((run.name, state))
        print(f"{run.name}: {state}" + (f": python {shlex.join(run_argv)}" if run_argv else ""))
        if run_argv is not None:
            queue.append((run.folder, run_argv))
    if args.dry_run:
        return report
    start_all(queue, args.parallel, cwd=ROOT)
    return report


if __name__ == "__main__":
    main()
