"""The "Meta-RL" section of REPRODUCTIONS.md: RL seed folders grouped, averaged and plotted.

A results folder of ``examples/rl/*.py`` holds ``config.json`` (the settings, and an ``environment``
section naming the device), ``metrics.csv`` (one row per meta-iteration, growing while the run is in
progress) and, once finished, ``results.json``. Folders whose settings agree except for the seed (and
the worker count, the planned length and the machine) form one group, i.e. one row: the
pre- and post-adaptation returns averaged over each seed's last :data:`AVERAGE_LAST` iterations, then
over seeds with a 95% Student t interval (n - 1 degrees of freedom), and one learning-curve PNG.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shlex
from pathlib import Path
from typing import Any, NamedTuple

# The same window as the RL examples' results.json ("averaged_over_last_iterations", examples/rl/_driver.py).
AVERAGE_LAST = 10
# The metrics.csv columns read (floats); the drivers log more.
COLUMNS = ("iteration", "pre_return", "post_return", "elapsed_s")
# A run given up before its planned length (an ablation that answered its question) holds this file,
# whose first line says why; the table then reads "stopped at 57/300 (why)", not "in progress".
STOPPED_FILE = "stopped.txt"
# Settings that may differ between the seeds of one group: they change neither the method nor the task.
PER_SEED = ("seed", "workers", "iterations", "environment", "quick")
# Method of each script, by config.json's "script" (the script's file name, recorded by the driver since
# examples/rl/_driver.py).
SCRIPT_METHODS = {
    "maml_trpo.py": "MAML-TRPO",
    "promp.py": "ProMP",
    "metasgd_a2c.py": "Meta-SGD-A2C",
    "maml_pg.py": "MAML-PG",
}
# Folders without "script": the option only that method's driver records (ProMP also records meta_lr;
# maml_pg.py records the same keys as metasgd_a2c.py, so its folders from before read as Meta-SGD-A2C).
METHODS = (
    ("promp_steps", "ProMP", "examples/rl/promp.py"),
    ("max_kl", "MAML-TRPO", "examples/rl/maml_trpo.py"),
    ("meta_lr", "Meta-SGD-A2C", "examples/rl/metasgd_a2c.py"),
)
# The order in which the reconstructed command states the settings; all other keys follow sorted.
FLAG_ORDER = ("backend", "env", "horizon", "gamma", "inner_lr", "max_kl", "env_kwargs", "adapt_steps")
FLAG_ORDER += ("iterations", "seed")


class Run(NamedTuple):
    """One seed's results folder: ``rows`` are metrics.csv's complete rows (:data:`COLUMNS` as floats),
    ``results`` is results.json's dict, or None while the run is in progress; ``stopped`` is the
    first line of :data:`STOPPED_FILE` for a run given up before its end, else None."""

    folder: Path
    config: dict[str, Any]
    rows: list[dict[str, float]]
    results: dict[str, Any] | None
    stopped: str | None = None


def t_quantile_95(dof: int) -> float:
    """Two-sided 95% critical value of Student's t with ``dof`` (int >= 1) degrees of freedom: the ``t``
    with ``P(|T| <= t) = 0.95``; e.g. 12.706 for 1, 4.303 for 2.

    Solved by bisection on the exact finite-sum form of ``P(|T| <= t)`` for integer degrees of freedom
    (Abramowitz and Stegun 26.7.3 and 26.7.4), so no statistics package is needed.

    Example:
        >>> round(t_quantile_95(2), 4)
        4.3027
    """
    if not isinstance(dof, int) or isinstance(dof, bool) or dof < 1:
        raise ValueError(f"dof must be an int >= 1, got {dof!r}")

    def central_mass(t: float) -> float:
        theta = math.atan(t / math.sqrt(dof))
        sine, cos2 = math.sin(theta), math.cos(theta) ** 2
        if dof % 2 == 0:  # sin(theta) * (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ... up to cos^(dof-2))
            term, total = 1.0, 1.0
            for j in range(1, dof // 2):
                term *= cos2 * (2 * j - 1) / (2 * j)
                total += term
            return sine * total
        term = math.cos(theta)  # 2/pi (theta + sin(theta) (cos + 2/3 cos^3 + ... up to cos^(dof-2)))
        total = term if dof > 1 else 0.0
        for j in range(1, (dof - 1) // 2):
            term *= cos2 * (2 * j) / (2 * j + 1)
            total += term
        return 2 / math.pi * (theta + sine * total)

    low, high = 0.0, 1.0
    while central_mass(high) < 0.95:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if central_mass(middle) < 0.95 else (low, middle)
    return (low + high) / 2


def mean_interval(values) -> tuple[float, float | None]:
    """Mean of ``values`` (sequence of floats, one per seed) and the half-width of its 95% Student t
    interval, ``t_quantile_95(n - 1) * std(ddof=1) / sqrt(n)``; the half-width is None for one value."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("values must hold at least one number")
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, None
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, t_quantile_95(len(values) - 1) * math.sqrt(variance / len(values))


def read_run(folder: Path) -> Run | None:
    """The run in ``folder``, or None when it is not a meta-RL results folder (no config.json with the RL
    driver's ``env`` and ``meta_batch`` keys, or no metrics.csv yet)."""
    folder = Path(folder)
    config_file, metrics_file = folder / "config.json", folder / "metrics.csv"
    if not (config_file.exists() and metrics_file.exists()):
        return None
    config = json.loads(config_file.read_text())
    if not {"env", "meta_batch"} <= set(config):
        return None
    rows = []
    with metrics_file.open(newline="") as stream:
        for row in csv.DictReader(stream):
            try:
                rows.append({key: float(row[key]) for key in COLUMNS})
            except (KeyError, TypeError, ValueError):  # cut short: the last row of a file being written
                break
    results_file = folder / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else None
    stopped_file = folder / STOPPED_FILE
    stopped = None
    if results is None and stopped_file.exists():
        stopped = (stopped_file.read_text().strip().splitlines() or ["no reason given"])[0]
    return Run(folder, config, rows, results, stopped)


def method_and_script(config: dict[str, Any]) -> tuple[str, str]:
    """``(method name, example script)`` of the RL driver that wrote ``config``: its ``script`` entry, else
    (folders from before it) the method's own option (:data:`METHODS`)."""
    if "script" in config:
        if config["script"] not in SCRIPT_METHODS:
            raise ValueError(f"config.json's script {config['script']!r} is none of {sorted(SCRIPT_METHODS)}")
        return SCRIPT_METHODS[config["script"]], f"examples/rl/{config['script']}"
    for key, method, script in METHODS:
        if key in config:
            return method, script
    raise ValueError(f"config.json with keys {sorted(config)} is from none of {[m[1] for m in METHODS]}")


def settings_key(config: dict[str, Any]) -> str:
    """What the seeds of one group share: ``config`` without :data:`PER_SEED`, with the defaults of
    options added later filled in (1 adaptation step, the torch backend, MAML-TRPO's DiCE inner loss,
    the script its keys name), as canonical JSON."""
    shared = {key: value for key, value in config.items() if key not in PER_SEED}
    shared.setdefault("adapt_steps", 1)
    shared.setdefault("backend", "torch")
    shared["script"] = method_and_script(config)[1]
    if shared["script"].endswith("maml_trpo.py"):  # its folders from before --inner-loss ran DiCE
        shared.setdefault("inner_loss", "dice")
    return json.dumps(shared, sort_keys=True)


def group_runs(runs: list[Run]) -> list[list[Run]]:
    """Runs with equal :func:`settings_key`, each group sorted by seed, groups by their first folder."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(settings_key(run.config), []).append(run)
    ordered = [sorted(group, key=lambda run: run.config["seed"]) for group in groups.values()]
    return sorted(ordered, key=lambda group: group[0].folder.name)


def group_name(group: list[Run]) -> str:
    """The folders' common name without the ``_seed<N>`` suffix (e.g. ``maml_trpo_halfcheetah_fb_1step``)."""
    names = [run.folder.name for run in group]
    stems = {name.rsplit("_seed", 1)[0] if "_seed" in name else name for name in names}
    return stems.pop() if len(stems) == 1 else names[0]


def _flag_value(value: Any) -> str:
    if isinstance(value, dict):
        return shlex.quote(json.dumps(value))
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return shlex.quote(str(value))


def command(config: dict[str, Any], out: str, defaults: dict[str, Any] | None = None) -> str:
    """The command that starts the run of ``config`` into ``out`` (a path string): every setting that
    differs from the script's ``defaults`` (``DEFAULTS`` of the example; all settings when None), plus
    ``--env``, ``--horizon``, ``--iterations`` and ``--seed``. Rebuilt from config.json because a run's
    own recorded command is ``--resume --out DIR`` when it was resumed."""
    _, script = method_and_script(config)
    always = {"env", "horizon", "iterations", "seed"}
    skip = {"environment", "quick", "workers", "script"}
    keys = [k for k in FLAG_ORDER if k in config] + sorted(set(config) - set(FLAG_ORDER))
    words = ["python", script]
    for key in keys:
        value = config[key]
        if key in skip or value in ({}, None) or (key == "backend" and value == "torch"):
            continue
        if key == "adapt_steps" and value == 1:
            continue
        if key not in always and defaults is not None and defaults.get(key, object()) == value:
            continue
        words += [f"--{key.replace('_', '-')}", _flag_value(value)]
    return " ".join(words + ["--out", shlex.quote(out), "--no-progress"])


def summarize_seeds(group: list[Run], last: int = AVERAGE_LAST) -> dict[str, Any]:
    """Per seed the mean pre/post return of its last ``last`` metrics rows; across seeds their means and
    95% half-widths (:func:`mean_interval`). Seeds with no complete row yet are left out."""
    with_rows = [run for run in group if run.rows]
    pre = [sum(row["pre_return"] for row in run.rows[-last:]) / len(run.rows[-last:]) for run in with_rows]
    post = [sum(row["post_return"] for row in run.rows[-last:]) / len(run.rows[-last:]) for run in with_rows]
    summary: dict[str, Any] = {"seeds": [run.config["seed"] for run in with_rows], "pre": pre, "post": post}
    if with_rows:
        summary["pre_mean"], summary["pre_half"] = mean_interval(pre)
        summary["post_mean"], summary["post_half"] = mean_interval(post)
        summary["window"] = min(last, *(len(run.rows) for run in with_rows))
    return summary


def progress(run: Run) -> str:
    """``300/300`` for a finished run, ``stopped at 57/300 (why)`` for one given up (its
    :data:`STOPPED_FILE`), else ``in progress: 37/300`` while results.json is absent."""
    done = f"{len(run.rows)}/{run.config['iterations']}"
    if run.results is not None:
        return done
    return f"stopped at {done} ({run.stopped})" if run.stopped else f"in progress: {done}"


def wall_minutes(run: Run) -> float:
    """Training wall time in minutes: results.json's, else metrics.csv's last ``elapsed_s`` (which
    counts on across resumes); NaN before the first row."""
    if run.results is not None and "wall_seconds" in run.results:
        return run.results["wall_seconds"] / 60
    return run.rows[-1]["elapsed_s"] / 60 if run.rows else math.nan


def device(run: Run) -> str:
    """config.json's ``environment.device``, else results.json's ``device``, else ``?``."""
    recorded = run.config.get("environment", {}).get("device")
    return recorded or (run.results or {}).get("device", "?")


def plot_group(group: list[Run], path: Path, reference: float | None = None, title: str = "") -> Path | None:
    """Writes ``path`` (PNG): post- and pre-adaptation return per iteration, the mean over the seeds with a
    band of the 95% Student t interval, over the iterations every seed has reached; ``reference`` as a
    dotted line. Returns ``path``, or None when no seed has a row yet. Needs matplotlib."""
    with_rows = [run for run in group if run.rows]
    if not with_rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    length = min(len(run.rows) for run in with_rows)
    iterations = [row["iteration"] for row in with_rows[0].rows[:length]]
    figure, axis = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for column, label in (("post_return", "after adaptation"), ("pre_return", "before adaptation")):
        stats = [mean_interval([run.rows[i][column] for run in with_rows]) for i in range(length)]
        means = [mean for mean, _ in stats]
        (line,) = axis.plot(iterations, means, label=label)
        if len(with_rows) > 1:
            low = [mean - half for mean, half in stats]
            high = [mean + half for mean, half in stats]
            axis.fill_between(iterations, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    if reference is not None:
        axis.axhline(reference, color="grey", linestyle=":", label="learn2learn's figure, after adaptation")
    seeds = ", ".join(str(run.config["seed"]) for run in with_rows)
    band = "band: 95% t interval over seeds" if len(with_rows) > 1 else "one seed"
    axis.set_title(f"{title}\nmean of seeds {seeds}; {band}", fontsize=9)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("iteration (meta-updates)")
    axis.set_ylabel("return per episode")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    plt.close(figure)
    return path


def _interval(mean: float, half: float | None) -> str:
    return f"{mean:.1f}" if half is None else f"{mean:.1f} ± {half:.1f}"


def _seed_command(group: list[Run], root: Path, defaults: dict[str, Any] | None) -> str:
    """The command of the group's seeds: one line, or a shell loop over the seeds."""
    first = group[0]
    folder = first.folder.resolve()
    parent = folder.parent
    location = parent.relative_to(root) if parent.is_relative_to(root) else parent
    if len(group) == 1:
        return command(first.config, str(location / first.folder.name), defaults)
    # a placeholder the quoting leaves alone, then the loop variable
    config = {**first.config, "seed": "SEEDVARIABLE"}
    line = command(config, str(location / f"{group_name(group)}_seedSEEDVARIABLE"), defaults)
    seeds = " ".join(str(run.config["seed"]) for run in group)
    return f"for S in {seeds}; do {line.replace('SEEDVARIABLE', '$S')}; done"


def group_row(
    group: list[Run], reference: str, curve: str, root: Path, defaults=None, variant: str = ""
) -> str:
    """One table row (see :func:`section` for the columns). ``reference``: learn2learn's number as text
    (empty when there is none); ``curve``: the PNG's link target (empty when none); ``variant``: how the
    setting differs from learn2learn's, in words (empty: untracked settings)."""
    config = group[0].config
    method, _ = method_and_script(config)
    summary = summarize_seeds(group)
    if summary["seeds"]:
        window = "" if summary["window"] == AVERAGE_LAST else f" (last {summary['window']} it.)"
        post = _interval(summary["post_mean"], summary["post_half"]) + window
        pre = _interval(summary["pre_mean"], summary["pre_half"]) + window
    else:
        post = pre = "no iteration yet"
    per_seed = lambda text: "; ".join(f"{run.config['seed']}: {text(run)}" for run in group)  # noqa: E731
    devices = sorted({device(run) for run in group})
    return (
        f"| {config['env']} | {method} ({config.get('backend', 'torch')}) | {variant or 'other settings'} "
        f"| {config.get('adapt_steps', 1)} | {reference or 'n/a'} | {post} | {pre} | {len(group)} "
        f"| {per_seed(progress)} "
        f"| {per_seed(lambda run: f'{wall_minutes(run):.0f} min')} | {'; '.join(devices)} "
        f"| {f'[png]({curve})' if curve else ''} | `{_seed_command(group, root, defaults)}` |"
    )


HEADER = (
    "| env | method (backend) | variant | adapt steps | learn2learn, after adaptation "
    "| ours, after adaptation | ours, before adaptation | seeds | iterations per seed | wall time per seed "
    "| device | curve | command |"
)


def matches(config: dict[str, Any], script: str, settings: dict[str, Any]) -> bool:
    """Whether ``config`` was written by ``script`` with every one of ``settings`` (config keys -> values;
    options added later count with their defaults for folders from before them, as in
    :func:`settings_key`)."""
    recorded = json.loads(settings_key(config))
    return recorded["script"] == script and all(recorded.get(k) == v for k, v in settings.items())


def _planned_cost(reproduction, costs: dict) -> str:
    """A "not run" row's wall-time cell: the hours per seed at the seconds per update that
    ``rl_reproductions.py --measure`` timed (``costs``, by reproduction name); empty when untimed."""
    timing = costs.get(reproduction.name)
    if not timing:
        return ""
    hours = reproduction.iterations * timing["seconds_per_update"] / 3600
    return (
        f"about {hours:.1f} h per seed at {timing['seconds_per_update']:.3g} s/update on "
        f"{timing['device']} ({timing['cpu_count']} cores, {timing['measured']})"
    )


def section(
    runs: list[Run], tracked, output_dir: Path, root: Path, defaults_of=None, costs: dict | None = None
) -> list[str]:
    """The "Meta-RL" table rows, one per group of ``runs`` (curves written beside the runs; groups of a
    tracked setting first, in ``tracked``'s order), then one "not run" row per ``tracked`` reproduction
    no group matches.

    Args:
        runs: :class:`Run` list (quick runs already left out).
        tracked: objects with ``name``, ``script``, ``settings`` (dict), ``reference`` (text),
            ``reference_value`` (float), ``variant`` (text: the table's column) and
            ``command(seed) -> str`` (``rl_reproductions.TRACKED``).
        output_dir: the folder of REPRODUCTIONS.md (curve links are relative to it).
        root: the repository root (commands name paths relative to it).
        defaults_of: ``script -> DEFAULTS dict or None`` (commands leave out default settings).
        costs: ``{tracked name: {"seconds_per_update", "device", "cpu_count", "measured"}}``
            (``rl_reproductions.read_costs()``): a "not run" row's time per seed.
    Returns:
        the table's markdown lines, header included.
    """
    rows, covered = [], set()
    for group, found in _tracked_first(group_runs(runs), tracked):
        method, script = method_and_script(group[0].config)
        covered |= {r.name for r in found}
        reference = _most_specific(found)
        name = group_name(group)
        title = (
            f"{method}, {group[0].config['env']}, {group[0].config.get('adapt_steps', 1)} adaptation step(s)"
        )
        if reference is not None and reference.variant:
            title += f"\n{reference.variant}"
        curve = plot_group(
            group, group[0].folder.parent / f"{name}.png", reference and reference.reference_value, title
        )
        link = os.path.relpath(Path(curve).resolve(), Path(output_dir).resolve()) if curve else ""
        defaults = defaults_of(script) if defaults_of else None
        variant = reference.variant if reference else ""
        rows.append(group_row(group, reference.reference if reference else "", link, root, defaults, variant))
    for r in tracked:
        if r.name not in covered:
            env, steps = r.settings["env"], r.settings.get("adapt_steps", 1)
            seeds = " ".join(str(seed) for seed in r.seeds)
            line = r.command("SEEDVARIABLE").replace("SEEDVARIABLE", "$S")
            rows.append(
                f"| {env} | {r.method} (torch) | {r.variant or 'other settings'} | {steps} "
                f"| {r.reference} | not run | | 0 | {r.iterations} planned | {_planned_cost(r, costs or {})} "
                f"| | | `for S in {seeds}; do {line}; done` |"
            )
    return [HEADER, "|---|---|---|---:|---|---|---|---:|---|---|---|---|---|", *rows]


def _most_specific(found: list) -> Any:
    """The tracked setting with the most settings among ``found`` (all matching one group), the first
    on a tie; None when ``found`` is empty. An ablation matches its base setting too."""
    return max(found, key=lambda r: len(r.settings), default=None)


def _tracked_first(groups: list[list[Run]], tracked) -> list[tuple[list[Run], list]]:
    """``(group, the tracked settings it matches)`` pairs, in the order of the ``tracked`` setting each
    group is (its most specific match); untracked groups after, in their own order."""
    tracked = list(tracked)
    pairs = [
        (group, [r for r in tracked if matches(group[0].config, r.script, r.settings)]) for group in groups
    ]

    def rank(pair) -> int:
        best = _most_specific(pair[1])
        return len(tracked) if best is None else tracked.index(best)

    return sorted(pairs, key=rank)  # stable: equal ranks keep their order
