"""The conv4 models' ``layout`` keyword, shared by both backends so one call fails and behaves
the same way on each.

``"maml"`` is the MAML reference code's batch norm (eps 1e-3, momentum 0.999, running statistics
only when asked); ``"learn2learn"`` is learn2learn 0.2.0's conv block, which leaves torch's
``BatchNorm2d`` defaults (eps 1e-5, momentum 0.1, running statistics kept), so its checkpoints load.
Momentum follows torch's convention: new = (1 - momentum) * old + momentum * batch.
"""

from __future__ import annotations

LAYOUTS = ("maml", "learn2learn")
BATCH_NORM_SETTINGS = {"maml": (1e-3, 0.999), "learn2learn": (1e-5, 0.1)}  # layout -> (eps, momentum)


def pool_window(max_pool_factor: float) -> int:
    """The pooling window (or the conv stride), ``int(2 * max_pool_factor)``, as learn2learn derives it."""
    window = int(2 * max_pool_factor)
    if window < 1:
        raise ValueError(
            f"max_pool_factor={max_pool_factor!r} gives a pooling window of {window}; "
            "it must be at least 0.5 (for layers > 4 pass max_pool_factor explicitly)"
        )
    return window


def resolve_layout(layout: str, track_running_stats: bool | None) -> bool:
    """Check ``layout`` ("maml" or "learn2learn") and return the effective ``track_running_stats``
    (a bool): None means False for "maml" and True for "learn2learn", which refuses False."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not one of {LAYOUTS}")
    if layout == "learn2learn":
        if track_running_stats is False:
            raise ValueError(
                "layout='learn2learn' tracks running statistics; track_running_stats=False "
                "contradicts it (leave it None or pass True)"
            )
        return True
    return bool(track_running_stats)
