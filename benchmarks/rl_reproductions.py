"""Starts or resumes every meta-RL reproduction run (issue 17): learn2learn's MAML-TRPO curves.

Each reproduction is a setting run with several seeds, one results folder per seed:
``benchmarks/results/<name>_seed<S>/``. For each folder this script decides: ``done`` (results.json
written for the planned iterations), ``stopped`` (given up: its ``stopped.txt`` says why; delete
that file to resume it), ``running`` (another process holds the folder's lock), ``resume``
(a checkpoint or metrics exist: ``--resume --out DIR``, with ``--iterations`` when more are planned) or
``start`` (the full command). Runs go one after the other, or ``--parallel N`` at a time, niced, each
logging to ``<folder>/log.txt``; a run needing an option its script lacks is skipped with a message.

    python benchmarks/rl_reproductions.py --dry-run          # what would run, and why
    python benchmarks/rl_reproductions.py --only maml_trpo_halfcheetah_fb_1step --parallel 3
    python benchmarks/rl_reproductions.py --measure 3        # time updates: rl_costs.json
    python benchmarks/reproductions.py                       # then regenerate REPRODUCTIONS.md

``--measure N`` runs seed 0 of each chosen setting for N updates in a temporary folder and records
the seconds per update (updates 2..N) in ``results/rl_costs.json``; the "not run" rows of the
Meta-RL table turn them into hours per seed.

learn2learn's numbers are read off the two figures of its ``examples/rl/README.md`` (August 2019: mean
and standard deviation over 3 seeds of the post-adaptation return of ``examples/rl/maml_trpo.py``),
as issue 17 reads them; its text says both environments ran for 300 updates.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:  # benchmarks/ is no package; its runners share _runner.py
    sys.path.insert(0, str(HERE))
from _runner import locked, start_all, time_updates  # noqa: E402
from meta_rl_summary import STOPPED_FILE  # noqa: E402

RESULTS = HERE / "results"
COSTS = RESULTS / "rl_costs.json"  # --measure's timings, which the "not run" rows turn into hours

# learn2learn's examples/rl/maml_trpo.py settings that differ from our maml_trpo.py defaults; the others
# (meta-batch 20, 20 episodes per task, GAE tau 1, 2x100 ReLU policy, 15 line-search halvings) are the
# same. HalfCheetah's control cost is learn2learn's 0.5 * 1e-1 * |a|^2.
LEARN2LEARN = {"horizon": 100, "gamma": 0.95}


def learn2learn_step_sizes(action_size: int) -> dict[str, float]:
    """learn2learn's adaptation lr 0.1 and max KL 0.01 in our convention.

    learn2learn's policy averages log-probabilities over the action dimensions and its trust region
    averages the KL over them; ours sum both (the Gaussian's log-density and KL). The same inner step is
    lr 0.1 / action_size here, and the same trust region (direction, step length, KL test) max KL
    0.01 * action_size."""
    return {"inner_lr": 0.1 / action_size, "max_kl": 0.01 * action_size}


FIGURE = "learn2learn examples/rl/README.md figure"
# settings the RL drivers default to, and defaulted to before they had the option: commands leave them out
DRIVER_DEFAULTS = {"adapt_steps": 1, "inner_loss": "dice"}


class Reproduction(NamedTuple):
    """One tracked setting: folders ``<results>/<name>_seed<S>`` for ``seeds``.

    ``settings`` are config.json keys -> values (the run's flags, ``--iterations``/``--seed`` aside);
    ``reference`` is learn2learn's number as text, ``reference_value`` the value drawn on the curve;
    ``variant`` says in a few words how the setting differs from learn2learn's (the table's column)."""

    name: str
    method: str
    script: str
    settings: dict[str, Any]
    iterations: int
    seeds: tuple[int, ...]
    reference: str
    reference_value: float
    variant: str = ""

    def folder(self, seed: int, results: Path = RESULTS) -> Path:
        return Path(results) / f"{self.name}_seed{seed}"

    def command(self, seed, results: Path = RESULTS) -> str:
        """The command that starts seed ``seed`` (an int, or a placeholder string) from scratch."""
        words = ["python", self.script]
        for key, value in self.settings.items():
            if DRIVER_DEFAULTS.get(key, object()) == value:
                continue  # the default: the command also works with drivers older than the option
            text = json.dumps(value) if isinstance(value, dict) else str(value)
            words += [f"--{key.replace('_', '-')}", shlex.quote(text)]
        words += ["--iterations", str(self.iterations), "--seed", str(seed)]
        out = self.folder(seed, results)
        out = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
        return " ".join(words + ["--out", shlex.quote(str(out)), "--no-progress"])


HALFCHEETAH = {
    "env": "HalfCheetahForwardBackward-v1",
    **LEARN2LEARN,
    **learn2learn_step_sizes(6),
    "env_kwargs": {"ctrl_cost_weight": 0.05},
}
# gymnasium v5 Ant's weights are learn2learn's (control 0.5, contact 5e-4, survive 1); its episode ends
# when the torso leaves z in [0, 1], v5's default range is [0.2, 1].
ANT = {
    "env": "AntForwardBackward-v1",
    **LEARN2LEARN,
    **learn2learn_step_sizes(8),
    "env_kwargs": {"healthy_z_range": [0.0, 1.0]},
}
# learn2learn's settings first (its plain inner loss: the original MAML code's too), then the ablations of
# the 1-step setting, each one change, run while the gap to learn2learn's curve was examined
L2L_VARIANT = "learn2learn's settings (its plain inner loss)"
TRACKED = (
    Reproduction(
        "maml_trpo_halfcheetah_fb_1step_plain",
        "MAML-TRPO",
        "examples/rl/maml_trpo.py",
        {**HALFCHEETAH, "adapt_steps": 1, "inner_loss": "plain"},
        300,
        (0, 1, 2),
        f"about 250-270 at update 300 ({FIGURE})",
        260.0,
        L2L_VARIANT,
    ),
    Reproduction(
        "maml_trpo_halfcheetah_fb_3step",
        "MAML-TRPO",
        "examples/rl/maml_trpo.py",
        {**HALFCHEETAH, "adapt_steps": 3, "inner_loss": "plain"},
        300,
        (0, 1, 2),
        f"about 400 at update 300 ({FIGURE})",
        400.0,
        L2L_VARIANT,
    ),
    Reproduction(
        "maml_trpo_ant_fb_3step",
        "MAML-TRPO",
        "examples/rl/maml_trpo.py",
        {**ANT, "adapt_steps": 3, "inner_loss": "plain"},
        600,
        (0, 1, 2),
        f"about 185 at about update 600 ({FIGURE}; its text says 300 updates)",
        185.0,
        L2L_VARIANT,
    ),
    # DiCE's meta-gradient has the score-function term learn2learn's lacks (unbiased, higher variance)
    Reproduction(
        "maml_trpo_halfcheetah_fb_1step",
        "MAML-TRPO",
        "examples/rl/maml_trpo.py",
        {**HALFCHEETAH, "adapt_steps": 1, "inner_loss": "dice"},
        300,
        (0, 1, 2),
        f"about 250-270 at update 300 ({FIGURE})",
        260.0,
        "ablation: DiCE inner loss (our default)",
    ),
    # with DiCE, learn2learn's policy initialisation (Glorot-uniform weights, zero biases): an audit of
    # the gap to learn2learn's curve ranked it first
    Reproduction(
        "maml_trpo_halfcheetah_fb_1step_xavier",
        "MAML-TRPO",
        "examples/rl/maml_trpo.py",
        {**HALFCHEETAH, "adapt_steps": 1, "inner_loss": "dice", "policy_init": "xavier"},
        300,
        (0,),  # a one-seed ablation
        f"about 250-270 at update 300 ({FIGURE})",
        260.0,
        "ablation: DiCE + learn2learn's initialisation",
    ),
    # with DiCE, the torso's x position in the observation (gymnasium's rootx: 18 numbers), as
    # learn2learn's environment observes it (its 20 numbers append the torso's centre of mass)
    Reproduction(
        "maml_trpo_halfcheetah_fb_1step_rootx",
        "MAML-TRPO",
        "examples/rl/maml_trpo.py",
        {
            **HALFCHEETAH,
            "adapt_steps": 1,
            "inner_loss": "dice",
            "env_kwargs": {**HALFCHEETAH["env_kwargs"], "exclude_current_positions_from_observation": False},
        },
        300,
        (0,),  # a one-seed ablation
        f"about 250-270 at update 300 ({FIGURE})",
        260.0,
        "ablation: DiCE + torso x observed",
    ),
)


def plan(reproduction: Reproduction, seed: int, results: Path = RESULTS) -> tuple[str, list[str] | None]:
    """``(state, argv)`` for one seed: state ``done``/``stopped``/``running``/``resume``/``start``;
    argv (after ``python``) is None when nothing is to run."""
    folder = reproduction.folder(seed, results)
    out = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder  # runs start in ROOT
    resume = [reproduction.script, "--resume", "--out", str(out), "--no-progress"]
    if (folder / "results.json").exists():
        config = json.loads((folder / "config.json").read_text())
        if config["iterations"] >= reproduction.iterations:
            return "done", None
        return "resume", [*resume, "--iterations", str(reproduction.iterations)]
    if (folder / STOPPED_FILE).exists():
        return "stopped", None
    if locked(folder):
        return "running", None
    if (folder / "checkpoint.npz").exists() or (folder / "metrics.csv").exists():
        return "resume", [*resume, "--iterations", str(reproduction.iterations)]
    return "start", shlex.split(reproduction.command(seed, results))[1:]


def measure(reproduction: Reproduction, updates: int) -> dict:
    """Seconds per meta-update of ``reproduction``'s settings here: seed 0 run for ``updates`` updates
    in a temporary folder, the training time of updates 2..``updates`` (``elapsed_s``, so the first
    update's set-up is left out) divided by their number; one OpenMP thread on one CPU, as the
    runner gives each run."""

    def argv_for(scratch: Path) -> tuple[list[str], Path]:
        argv = shlex.split(reproduction.command(0, scratch))[1:]
        argv[argv.index("--iterations") + 1] = str(updates)
        return argv, reproduction.folder(0, scratch)

    def after_the_first(rows: list[dict]) -> tuple[float, int]:
        return float(rows[-1]["elapsed_s"]) - float(rows[0]["elapsed_s"]), len(rows) - 1

    return time_updates(reproduction.name, argv_for, after_the_first, ROOT)


def read_costs(path: Path | None = None) -> dict:
    """``{reproduction name: measure()'s dict}`` from ``path`` (default ``COSTS``; {} when absent)."""
    path = COSTS if path is None else Path(path)
    return json.loads(path.read_text()) if path.exists() else {}


def missing_options(script: str, argv: list[str]) -> list[str]:
    """The ``--options`` of ``argv`` that ``script --help`` does not list (e.g. ``--adapt-steps`` on a
    driver from before that option)."""
    text = subprocess.run(
        [sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True, cwd=ROOT
    ).stdout
    return [word for word in argv if word.startswith("--") and word not in text]


def main(argv=None) -> list[tuple[str, int, str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=[r.name for r in TRACKED], help="these reproductions")
    parser.add_argument("--seeds", type=int, nargs="+", help="these seeds (default: each one's own)")
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time (>= 1)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and start nothing")
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder holding the run folders")
    parser.add_argument(
        "--measure", type=int, default=0, help="time N updates of each chosen setting instead (N >= 2)"
    )
    args = parser.parse_args(argv)
    if args.parallel < 1:
        parser.error(f"--parallel must be >= 1, got {args.parallel}")
    if args.measure and args.measure < 2:
        parser.error(f"--measure must be >= 2 updates, got {args.measure}")
    chosen = [r for r in TRACKED if not args.only or r.name in args.only]
    if args.measure:
        costs_path = Path(args.results) / COSTS.name
        costs = read_costs(costs_path)
        for reproduction in chosen:
            costs[reproduction.name] = measure(reproduction, args.measure)
            print(f"{reproduction.name}: {costs[reproduction.name]['seconds_per_update']} s per update")
            costs_path.write_text(json.dumps(costs, indent=2, sort_keys=True) + "\n")
        return [(reproduction.name, 0, "measured") for reproduction in chosen]
    queue, report = [], []
    for reproduction in chosen:
        for seed in args.seeds or reproduction.seeds:
            state, run_argv = plan(reproduction, seed, args.results)
            report.append((reproduction.name, seed, state))
            print(
                f"{reproduction.name} seed {seed}: {state}"
                + (f": python {shlex.join(run_argv)}" if run_argv else "")
            )
            if run_argv is not None:
                queue.append((reproduction.folder(seed, args.results), run_argv))
    if args.dry_run or not queue:
        return report
    checked: dict[tuple, list[str]] = {}
    runnable = []
    for folder, run_argv in queue:
        script = run_argv[0]
        options = tuple(word for word in run_argv if word.startswith("--"))
        if (script, options) not in checked:
            checked[(script, options)] = missing_options(script, run_argv)
        missing = checked[(script, options)]
        if missing:
            print(f"skipped {folder.name}: {script} does not take {' '.join(missing)} yet")
        else:
            runnable.append((folder, run_argv))
    start_all(runnable, args.parallel, cwd=ROOT)
    return report


if __name__ == "__main__":
    main()
