"""The inner (adaptation) losses of policy-gradient MAML, by name, shared by both backends.

``"dice"``: DiCE's magic box around the log-probabilities. Its gradient is REINFORCE's, and its
second derivative keeps the score-function term (the episodes were sampled by the policy being
adapted), so the meta-gradient is unbiased (Foerster et al. 2018; E-MAML's correction).
``"plain"``: ``-(log_prob * advantage)``, the loss of the original MAML code and of learn2learn's
``examples/rl/maml_trpo.py``. Same value and gradient; its meta-gradient drops the score-function
term: biased, and of lower variance (Rothfuss et al. 2019, ProMP, Sec. 4).
"""

from __future__ import annotations

from typing import Any

INNER_LOSSES = ("dice", "plain")


def check_inner_loss(inner_loss: Any) -> str:
    """``inner_loss`` if it is one of :data:`INNER_LOSSES`, else ``ValueError`` naming them.

    Example:
        >>> check_inner_loss("plain")
        'plain'
    """
    if inner_loss not in INNER_LOSSES:
        raise ValueError(
            f"inner_loss={inner_loss!r} is not one of {INNER_LOSSES} ('dice': unbiased meta-gradient; "
            "'plain': the original MAML code's loss, without the score-function term)"
        )
    return inner_loss
