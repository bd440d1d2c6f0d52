"""Writes benchmarks/REPRODUCTIONS.md from results folders (each holding a results.json).

Usage: python benchmarks/reproductions.py [FOLDER ...] [--output benchmarks/REPRODUCTIONS.md]
Default folders: every benchmarks/results/*/ with a results.json, and every meta-RL run folder
(config.json and metrics.csv; results.json appears when it ends), in progress or not. Quick
(CI-sized) runs are left out unless --include-quick is given. Nothing in the table is typed by
hand: the paper's number and its source come from the example's defaults (saved in
results.json), learn2learn's meta-RL numbers from benchmarks/rl_reproductions.py, ours from the run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _percent(value: float) -> str:
    return f"{100 * value:.2f}"


def verdict(paper: float, mean: float, half_width: float) -> str:
    """``reached`` when the paper's number lies inside our 95% interval or below it."""
    if mean - half_width > paper:
        return "above"
    if mean + half_width >= paper:
        return "reached (within interval)"
    return f"below by {100 * (paper - mean - half_width):.2f} points beyond the interval"


def classification_rows(results: dict, config: dict | None = None) -> list[str]:
    rows = []
    model = results.get("model") or (config or {}).get("model", "?")
    command = results.get("command", "?")
    if model != "?" and "--model" not in command:  # pin it: the script's default may have changed since
        command += f" --model {model}"
    splits = results.get("train_splits", ["train"])  # runs from before the option trained on "train"
    if "--train-splits" not in command:
        command += f" --train-splits {' '.join(splits)}"
    for setting, test in sorted(results.get("test", {}).items()):
        if "accuracy" not in test:
            continue
        paper = results.get("paper", {}).get(setting)
        source = results.get("paper_source")
        unpublished = "no published number" + (f" ({source})" if source else "")
        budget = f"{results.get('iterations')} it, {results.get('wall_seconds', math.nan) / 60:.0f} min"
        if results.get("stopped_early"):
            budget += " (time budget)"
        trained = f"trained {results.get('train_setting', '?')}" + (
            "" if splits == ["train"] else f" on {'+'.join(splits)}"
        )
        rows.append(
            "| {method} | {dataset} | {setting} | {paper} | {ours} ± {ci} | {verdict} | {steps} "
            "| {backend} | {device} | {budget} | `{command}` |".format(
                method=results["method"],
                dataset=results["dataset"],
                setting=f"{setting} ({trained}, {model})",
                paper=_percent(paper) if paper is not None else "n/a",
                ours=_percent(test["accuracy"]),
                ci=_percent(test["ci95"]),
                verdict=verdict(paper, test["accuracy"], test["ci95"]) if paper is not None else unpublished,
                steps=test.get("adaptation_steps"),
                backend=results["backend"],
                device=results.get("device", "?"),
                budget=budget,
                command=command,
            )
        )
    return rows


def other_rows(name: str, results: dict) -> list[str]:
    """Runs whose results are not few-shot accuracies (regression, RL): their numeric summaries."""
    fields = {k: v for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for key, value in results.get("test", {}).items() if isinstance(results.get("test"), dict) else []:
        if isinstance(value, dict):
            fields.update({f"{key}.{k}": v for k, v in value.items() if isinstance(v, (int, float))})
    summary = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(fields.items())
    )
    return [
        f"| {name} | {results.get('backend', '?')} | {results.get('device', '?')} | {summary} | "
        f"`{results.get('command', '?')}` |"
    ]


def _example_defaults(script: str) -> dict:
    import runpy

    return runpy.run_path(str(HERE.parent / "examples" / "vision" / f"{script}.py"))["DEFAULTS"]


def _cost(run, costs: dict) -> str:
    """What ``run`` takes: its planned updates and, when timed (``fewshot_reproductions.py
    --measure``), the hours at the measured seconds per update on the stated device."""
    updates = run.iterations()
    text = f"{updates} it"
    timing = costs.get(run.name)
    if timing:
        hours = updates * timing["seconds_per_update"] / 3600
        cores = f"{timing['cpu_count']} cores"
        if timing.get("cpus_used") == 1:  # pinned, as the runs are
            cores = f"one of {cores}, measured {timing['measured']}"
        text += (
            f"; about {hours:.1f} h of training at {timing['seconds_per_update']:.3g} s/it on "
            f"{timing['device']} ({cores})"
        )
    return text


def finished_folders(folders: list[Path]) -> set[Path]:
    """The resolved paths of ``folders`` that hold a results.json (runs that have ended)."""
    return {Path(folder).resolve() for folder in folders if (Path(folder) / "results.json").exists()}


def missing_rows(folders: list[Path]) -> list[str]:
    """Rows for the planned few-shot runs (``fewshot_reproductions.PLANNED``) whose folder holds no
    results.json: the paper's number, the run's state (not run / updates done), what it takes, the
    command. Finished runs appear through their own results instead."""
    planned = _sibling("fewshot_reproductions")
    finished = finished_folders(folders)
    costs = planned.read_costs()
    rows = []
    for run in planned.PLANNED:
        if run.folder.resolve() in finished or (run.folder / "results.json").exists():
            continue
        defaults = _example_defaults(run.script)
        method, paper = defaults["method"], defaults.get("paper", {})
        if "--first-order" in run.arguments:
            method, paper = defaults["first_order"]["method"], defaults["first_order"]["paper"]
        done, seconds = planned.progress_and_time(run)
        state = "not run"
        if done:  # the pace so far, validations included, on whatever shared the machine
            state = f"in progress: {done}/{run.iterations()} it, {seconds / 3600:.1f} h so far"
            state += f" ({seconds / done:.2g} s/it with validations)"
            validated = planned.last_validation(run)
            if validated is not None:  # the run's first test setting, on the validation split
                state += f"; validation ({run.settings[0]}) {100 * validated[1]:.1f}% at {validated[0]}"
        backend = "jax" if "--backend jax" in run.arguments else "torch"
        for setting in run.settings:
            number = _percent(paper[setting]) if setting in paper else "n/a"
            rows.append(
                f"| {method} | {defaults['dataset']} | {setting} | {number} | {state} | {run.why} | "
                f"| {backend} | | {_cost(run, costs)} | `{run.command()}` |"
            )
    return rows


def finding_lines(folders: list[Path]) -> list[str]:
    """A list item per finished planned run (results.json in its folder) that states a ``finding``:
    what it found beyond the table's numbers, under the few-shot table."""
    finished = finished_folders(folders)
    items = [
        f"- `{run.name}`: {run.finding}"
        for run in _sibling("fewshot_reproductions").PLANNED
        if run.finding and run.folder.resolve() in finished
    ]
    return ["", "Findings of finished runs:", "", *items] if items else []


def _sibling(name: str):
    """``benchmarks/<name>.py`` as a module (the benchmarks folder is no package)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _rl_defaults(script: str) -> dict | None:
    """The RL example's DEFAULTS (commands leave out default settings), None when it does not load."""
    import runpy

    path = HERE.parent / script
    sys.path.insert(0, str(path.parent))  # as `python script` does: it imports the driver beside it
    try:
        return runpy.run_path(str(path))["DEFAULTS"]
    except Exception:  # a script being edited: the command then states every setting
        return None
    finally:
        sys.path.remove(str(path.parent))


META_RL_NOTES = [
    "Ours: the mean undiscounted return per episode over each seed's last 10 meta-iterations (fewer, as",
    "stated, while a run has fewer), on the episodes sampled before (pre) and after (post) adaptation;",
    "then the mean over seeds ± the half-width of a 95% Student t interval over seeds (n - 1 degrees of",
    "freedom: 4.30 standard errors for 3 seeds). Iterations: done / planned per seed (`in progress`",
    "until results.json is written). Wall time: each seed's training time so far (`elapsed_s`, counted",
    "across resumes) on a machine whose 2 cores the runs share. Commands are rebuilt from config.json;",
    "`python benchmarks/rl_reproductions.py` starts or resumes every tracked run. learn2learn's",
    "numbers are read off the figures of its `examples/rl/README.md` (August 2019; its band there is",
    "the standard deviation over 3 seeds). That README calls the plotted value the expected sum of",
    "rewards over all tasks; its script logs one number per iteration, the post-adaptation return per",
    "episode averaged over the 20 tasks, which is what our post column holds.",
    "",
    "Settings that differ from learn2learn's `examples/rl/maml_trpo.py` (gym, mujoco-py, cherry):",
    "",
    "- Environments: gymnasium v5 MuJoCo. HalfCheetah observes 17 numbers (learn2learn's 20 add the",
    "  torso's centre of mass, whose x grows without bound); control cost 0.05 |a|^2 is set with",
    "  `--env-kwargs` to match learn2learn's. Ant observes 105 numbers (learn2learn's 111 include the",
    "  world body's contact forces) and ends its episode outside z in [0, 1] as learn2learn's does",
    "  (`healthy_z_range`; v5's default is [0.2, 1]). Actions are clipped to [-1, 1] in both.",
    "- Inner loss: learn2learn's plain A2C loss (`-(log_prob * advantage)`, `--inner-loss plain`) in",
    "  the rows of learn2learn's settings; DiCE (`magic_box`), our default, in the ablation rows: its",
    "  meta-gradient has the score-function term the plain one lacks (unbiased, higher variance). Both",
    "  adapt with the first-order loss while sampling and re-adapt second order in the meta-loss.",
    "- Step sizes: ours sum log-probabilities and KL over the action dimensions (the Gaussian's",
    "  log-density); learn2learn's policy averages them (`log_prob(...).mean(dim=1)`, KL `.mean()`). Its",
    "  adaptation lr 0.1 and max KL 0.01 are therefore run here as `--inner-lr 0.1/d --max-kl 0.01*d`",
    "  (d = 6 action dimensions on HalfCheetah, 8 on Ant): the same inner step, TRPO direction, step",
    "  length and KL test. What still differs: its line search compares the surrogate with the",
    "  per-dimension geometric-mean ratio, and it bounds KL(new || old) where ours bounds KL(old || new).",
    "- Baseline and advantages: both refit the linear baseline on the episode batch they score. Ours",
    "  has features of the step within each episode (t/100) and ridge 1e-5, in float64, with a zero",
    "  value after the last step. learn2learn's `LinearValue(env.state_size, env.action_size)` passes",
    "  the action size as the ridge (6); its time features count steps across the whole flattened batch",
    "  (0 to 19.99); it solves in float32 and uses the next episode's first state at episode ends.",
    "- Conjugate gradient: cherry's aliases `r` and `p` on its first iteration (one steepest-descent",
    "  restart, then nine CG steps); ours is the textbook iteration. Both run 10 iterations.",
    "- Initialisation: torch's default for the linear layers (random biases) here; Xavier-uniform",
    "  weights and zero biases in learn2learn (`--policy-init xavier`). Both start with standard",
    "  deviation 1.",
    "- Sampling: one process (SyncVectorEnv) and seeds 0, 1, 2 here; learn2learn ran 10 workers, seed 42.",
    "",
    "Ablations, each the 1-step setting with one change (the `ablation` rows): DiCE's inner loss, our",
    "default, over 3 seeds; with DiCE, learn2learn's initialisation learned more slowly than all three",
    "torch-init seeds over updates 31-60 and was stopped at 57 updates, and observing the torso's x",
    "(gymnasium's `exclude_current_positions_from_observation=false`, 18 numbers) stayed within the",
    "seeds' spread and was stopped at 142. A run of learn2learn's own `examples/rl/maml_trpo.py`",
    "(cherry 0.1.4) on this environment with learn2learn's 20 observations",
    "(`benchmarks/learn2learn_maml_trpo.py`) tells the algorithm code from the physics. It ran all",
    "300 updates (one seed) and ends below its published figure on this simulator (gymnasium's v5 on",
    "MuJoCo 3; mujoco-py's HalfCheetah-v2 then); it stood above every one of our DiCE seeds from",
    "update 151 on, and the inner loss was the largest algorithmic difference left. With",
    "learn2learn's inner loss the interval of our three seeds overlaps its published figure (the",
    "first row above) and lies above its own script's run here: the simulator does not keep this",
    "setting from the figure, and what kept the DiCE runs lower was the inner loss (DiCE's",
    "meta-gradient is unbiased, with higher variance). The table below sets learn2learn's run beside",
    "our three seeds of each inner loss; the sentences after it place its last 10 updates against each.",
]


def default_folders(results_dir: Path) -> list[Path]:
    """The folders of ``results_dir`` the table is made from: those holding a results.json, and the
    meta-RL runs in progress (config.json and metrics.csv); other runs in progress are left out."""
    summary = _sibling("meta_rl_summary")
    finished = {p.parent for p in Path(results_dir).glob("*/results.json")}
    running = {p.parent for p in Path(results_dir).glob("*/metrics.csv") if summary.read_run(p.parent)}
    return sorted(finished | running)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path)
    parser.add_argument("--output", type=Path, default=HERE / "REPRODUCTIONS.md")
    parser.add_argument("--include-quick", action="store_true")
    parser.add_argument(
        "--no-missing", action="store_true", help="leave out the tracked settings that have no results folder"
    )
    args = parser.parse_args(argv)
    summary, tracked = _sibling("meta_rl_summary"), _sibling("rl_reproductions")
    folders = args.folders or default_folders(HERE / "results")
    fewshot, other, meta_rl = [], [], []
    planned = {run.folder.resolve(): run for run in _sibling("fewshot_reproductions").PLANNED}
    for folder in folders:
        run = summary.read_run(folder)
        if run is not None:  # meta-RL, finished or in progress
            if not (run.config.get("quick") or (run.results or {}).get("quick")) or args.include_quick:
                meta_rl.append(run)
            continue
        file = Path(folder) / "results.json"
        if not file.exists():
            raise SystemExit(f"{file} does not exist")
        results = json.loads(file.read_text())
        if results.get("quick") and not args.include_quick:
            continue
        config_file = Path(folder) / "config.json"
        config = json.loads(config_file.read_text()) if config_file.exists() else {}
        if "--resume" in results.get("command", "") and Path(folder).resolve() in planned:
            # results.json names the last invocation; a planned run's start command reproduces it
            results = {**results, "command": planned[Path(folder).resolve()].command()}
        rows = classification_rows(results, config)
        if rows:
            fewshot += rows
        else:
            other += other_rows(Path(folder).name, results)
    lines = [
        "# Reproductions",
        "",
        "Generated by `python benchmarks/reproductions.py` from the results folders in",
        "`benchmarks/results/`; do not edit by hand. Protocol: the first 600 tasks of the test split",
        "(seeded), mean query accuracy with a 95% confidence interval (1.96 standard errors over",
        "tasks), the stated number of adaptation steps at test time. Batch norm normalises with the",
        "statistics of the batch scored: a task's queries are scored together (transductive, as",
        "MAML's published numbers are) unless the setting says non-transductive (each query in a",
        "batch with the support set alone; Nichol et al. 2018) or running-statistics: the model kept",
        "running batch-norm statistics in training (`--batch-norm running`) and is tested with them,",
        "each image on its own, as Snell et al.'s ProtoNets code (`model.eval()`) and MetaOptNet's do;",
        "ProtoNets rows without it embed the support set alone and a task's queries together.",
        "Each run's folder holds its",
        "`config.json`, `metrics.csv` (one row per validation) and `curve.png`. Runs not finished",
        "are planned in `benchmarks/fewshot_reproductions.py` (start or resume them with it; `--measure`",
        "times their updates for the budget column).",
        "",
        "## Few-shot classification",
        "",
        "| method | dataset | test setting | paper | ours | verdict | test steps | backend | device | budget "
        "| command |",
        "|---|---|---|---:|---:|---|---:|---|---|---|---|",
        *fewshot,
        *([] if args.no_missing else missing_rows(folders)),
        *finding_lines(folders),
    ]
    reproductions = [] if args.no_missing else tracked.TRACKED
    if meta_rl or reproductions:
        table = summary.section(
            meta_rl, reproductions, args.output.parent, HERE.parent, _rl_defaults, tracked.read_costs()
        )
        lines += ["", "## Meta-RL", "", *table, "", *META_RL_NOTES]
        peer = _sibling("_peer_table").peer_lines(HERE / "results")
        lines += ["", *peer] if peer else ["", "(not started)"]
    if other:
        lines += [
            "",
            "## Other runs",
            "",
            "| run | backend | device | results | command |",
            "|---|---|---|---|---|",
            *other,
        ]
    text = "\n".join(lines) + "\n"
    args.output.write_text(text)
    return text


if __name__ == "__main__":
    print(main())
