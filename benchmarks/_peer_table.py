"""learn2learn's own MAML-TRPO beside ours on the same HalfCheetah, update by update (issue 17).

:func:`peer_lines` reads the learn2learn run folder written by ``benchmarks/learn2learn_maml_trpo.py``
(``metrics.csv``: ``iteration`` from 0, ``adaptation_reward``) and our 1-step runs' ``metrics.csv``
(``iteration`` from 1, ``post_return``), and returns markdown: the post-adaptation return per
episode averaged over windows of updates, for every window learn2learn's run has begun. Both
numbers are the same quantity: the return per episode after adaptation, averaged over the
iteration's 20 tasks.
"""

from __future__ import annotations

import csv
from pathlib import Path

PEER = "learn2learn_maml_trpo_halfcheetah_fb_1step_seed42"
OURS = tuple(f"maml_trpo_halfcheetah_fb_1step_seed{seed}" for seed in (0, 1, 2))
WINDOW = 30


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


def peer_lines(results_dir: Path, window: int = WINDOW) -> list[str]:
    """Markdown lines (a sentence and a table) comparing the runs; empty without learn2learn's run.

    Args:
        results_dir: the folder holding the run folders ``PEER`` and ``OURS``.
        window: updates per row (int >= 1).
    """
    if window < 1:
        raise ValueError(f"window={window!r} must be a positive int")
    peer = read_returns(Path(results_dir) / PEER, "adaptation_reward", first=0)
    if not peer:
        return []
    ours = [read_returns(Path(results_dir) / name, "post_return", first=1) for name in OURS]
    last = max(peer)
    lines = [
        "learn2learn's own `examples/rl/maml_trpo.py` (seed 42) beside ours (seeds 0, 1, 2) on this",
        f"HalfCheetah, {last} of its 300 updates so far (`results/{PEER}`): post-adaptation return per",
        f"episode averaged over each window of {window} updates (a window learn2learn has not finished",
        "says how many of its updates it holds).",
        "",
        "| updates | learn2learn's code | ours, seed 0 | ours, seed 1 | ours, seed 2 |",
        "|---|---:|---:|---:|---:|",
    ]
    for low in range(1, last + 1, window):
        high = low + window - 1
        cells = []
        for returns in [peer, *ours]:
            found = window_mean(returns, low, min(high, last))
            if found is None:
                cells.append("")
                continue
            mean, count = found
            cells.append(f"{mean:.1f}" + (f" ({count} updates)" if count < window else ""))
        lines.append(f"| {low}-{high} | " + " | ".join(cells) + " |")
    return lines
