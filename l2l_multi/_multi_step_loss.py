"""MAML++'s multi-step loss (MSL) schedule: pure Python, shared by both backends."""

from __future__ import annotations


def msl_weights(adaptation_steps: int, epoch: int, anneal_epochs: int = 10) -> list[float]:
    """MAML++'s multi-step loss weights for the query losses after each adaptation step.

    Start uniform (``1 / steps``); over ``anneal_epochs`` the weights of earlier steps decay to
    ``0.03 / steps`` and the last step's grows accordingly (the schedule of the paper's code).

    Example:
        >>> msl_weights(4, 0)
        [0.25, 0.25, 0.25, 0.25]
        >>> [round(w, 4) for w in msl_weights(4, 100)]
        [0.0075, 0.0075, 0.0075, 0.9775]
    """
    if adaptation_steps < 1 or epoch < 0 or anneal_epochs < 1:
        raise ValueError(
            f"need adaptation_steps >= 1, epoch >= 0, anneal_epochs >= 1; got {adaptation_steps}, {epoch}, "
            f"{anneal_epochs}"
        )
    uniform = 1.0 / adaptation_steps
    decay = uniform / anneal_epochs
    floor = 0.03 / adaptation_steps
    weights = [max(uniform - epoch * decay, floor) for _ in range(adaptation_steps - 1)]
    weights.append(
        min(uniform + epoch * (adaptation_steps - 1) * decay, 1.0 - (adaptation_steps - 1) * floor)
    )
    return weights


__all__ = ["msl_weights"]
