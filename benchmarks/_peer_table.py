"""learn2learn's own MAML-TRPO beside ours on the same HalfCheetah, update by update (issue 17).

:func:`peer_lines` reads the learn2learn run folder written by
``benchmarks/learn2learn_maml_trpo.py`` (``metrics.csv``: ``iteration`` from 0,
``adaptation_reward``) and our 1-step runs' ``metrics.csv`` (``iteration`` from 1, ``post_return``):
3 seeds with learn2learn's settings, 3 with the DiCE inner loss and our one-seed ablations. It
returns markdown: the post-adaptation return per episode averaged over windows of updates, for every
window learn2learn's run has begun. Both numbers are the same quantity: the return per episode after
adaptation, averaged over the iteration's 20 tasks.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # benchmarks/ is no package
    sys.path.insert(0, str(HERE))
from meta_rl_summary import mean_interval  # noqa: E402

PEER = "learn2learn_maml_trpo_halfcheetah_fb_1step_seed42"
SEEDS = (0, 1, 2)
# our 3-seed runs of the same setting: (what they are, column title prefix, run folders). learn2learn's
# settings first: its plain inner loss; then the same with DiCE's, our default
SETTINGS = (
    (
        "ours with learn2learn's settings",
        "ours, plain loss",
        tuple(f"maml_trpo_halfcheetah_fb_1step_plain_seed{seed}" for seed in SEEDS),
    ),
    (
        "ours with the DiCE inner loss",
        "ours, DiCE",
        tuple(f"maml_trpo_halfcheetah_fb_1step_seed{seed}" for seed in SEEDS),
    ),
)
# our one-seed ablations of the DiCE setting: (column title, run folder)
ABLATIONS = (
    ("ours, DiCE + Xavier init, seed 0", "maml_trpo_halfcheetah_fb_1step_xavier_seed0"),
    ("ours, DiCE + torso x observed, seed 0", "maml_trpo_halfcheetah_fb_1step_rootx_seed0"),
)
WINDOW = 30
TAIL = 10  # our rows in the table above average each seed's last 10 updates: the same span here


def read_returns(folder: Path, column: str, first: int) -> dict[int, float]:
    """``{update (1-based int): return (float)}`` from ``folder/metrics.csv``'s ``column``; ``first``
    is the number the file gives its first update (0 or 1). Empty when the file is missing."""
    path = Path(folder) / "metrics.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as stream:
        return {int(row["iteration"]) - first + 1: float(row[column]) for row in csv.DictReader(stream)}


def window_mean(returns: dict[int, float], low: int, high: int) -> tuple[float, int] | None:
    """``(mean over updates low..high that ``returns`` holds, how many it holds)``, or None."""
    values = [returns[i] for i in range(low, high + 1) if i in returns]
    return (sum(values) / len(values), len(values)) if values else None


def _cells(runs: list[dict[int, float]], low: int, high: int, span: int) -> str:
    # one cell per run: the mean over updates low..high, saying how many it holds when under span
    cells = []
    for returns in runs:
        found = window_mean(returns, low, high)
        if found is None:
            cells.append("")
            continue
        mean, count = found
        cells.append(f"{mean:.1f}" + (f" ({count} update{'s' if count > 1 else ''})" if count < span else ""))
    return " | ".join(cells)


def peer_lines(results_dir: Path, window: int = WINDOW, tail: int = TAIL) -> list[str]:
    """Markdown lines (a sentence and a table) comparing the runs; empty without learn2learn's run.

    Args:
        results_dir: the folder holding the run folders ``PEER``, ``SETTINGS``' and ``ABLATIONS``'.
        window: updates per row (int >= 1).
        tail: the last row averages learn2learn's last ``tail`` updates (int >= 1), and ours over
            the same updates.
    """
    for name, value in (("window", window), ("tail", tail)):
        if value < 1:
            raise ValueError(f"{name}={value!r} must be a positive int")
    peer = read_returns(Path(results_dir) / PEER, "adaptation_reward", first=0)
    if not peer:
        return []
    read = lambda name: read_returns(Path(results_dir) / name, "post_return", first=1)  # noqa: E731
    settings = [(phrase, [read(name) for name in folders]) for phrase, _, folders in SETTINGS]
    ablations = [read(name) for _, name in ABLATIONS]
    titles = [f"{prefix}, seed {seed}" for _, prefix, _ in SETTINGS for seed in SEEDS]
    titles += [title for title, _ in ABLATIONS]
    last = max(peer)
    progress = "all 300 of its updates" if last >= 300 else f"{last} of its 300 updates so far"
    lines = [
        "learn2learn's own `examples/rl/maml_trpo.py` (seed 42) beside ours (seeds 0, 1, 2) on this",
        f"HalfCheetah, {progress} (`results/{PEER}`): post-adaptation return per",
        f"episode averaged over each window of {window} updates (a window learn2learn has not finished",
        f"says how many of its updates it holds); the last row, over its last {tail} updates, is the",
        "span our rows above average.",
        "",
        "| updates | learn2learn's code | " + " | ".join(titles) + " |",
        "|---|---:|" + "---:|" * len(titles),
    ]
    runs = [peer, *(run for _, seeds in settings for run in seeds), *ablations]
    for low in range(1, last + 1, window):
        high = low + window - 1
        lines.append(f"| {low}-{high} | {_cells(runs, low, min(high, last), window)} |")
    low = max(1, last - tail + 1)
    lines.append(f"| {low}-{last} (its last {last - low + 1}) | {_cells(runs, low, last, last - low + 1)} |")
    verdicts = [line for phrase, seeds in settings for line in verdict_lines(peer, seeds, low, last, phrase)]
    return lines + ([""] + verdicts if verdicts else [])


def verdict_lines(
    peer: dict[int, float], ours: list[dict[int, float]], low: int, high: int, name: str = "ours"
) -> list[str]:
    """A sentence placing learn2learn's mean over updates ``low..high`` against the mean and 95% t
    interval of the seeds ``ours`` (called ``name``) over the same updates; empty unless every run
    holds all of them."""
    span = range(low, high + 1)
    if not ours or any(i not in run for run in (peer, *ours) for i in span):
        return []
    theirs = sum(peer[i] for i in span) / len(span)
    mean, half = mean_interval([sum(run[i] for i in span) / len(span) for run in ours])
    if half is None:
        return []
    where = "inside" if abs(theirs - mean) <= half else "above" if theirs > mean else "below"
    return [
        f"Over updates {low}-{high}, learn2learn's code averages {theirs:.1f}; {name} {mean:.1f} "
        f"± {half:.1f} over the same updates ({len(ours)} seeds, 95% t interval): learn2learn's code is "
        f"{where} that interval."
    ]
