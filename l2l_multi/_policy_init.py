"""The initial-weight schemes of the meta-RL Gaussian policies (``DiagNormalPolicy`` on both backends)."""

from __future__ import annotations

# "torch": torch.nn.Linear's uniform(+-1/sqrt(fan_in)) weights and biases; "xavier": Glorot-uniform
# weights and zero biases, as learn2learn's examples/rl/policies.py and the MAML-RL code initialise
POLICY_INITS = ("torch", "xavier")


def check_policy_init(init: str) -> str:
    """``init`` when it is one of :data:`POLICY_INITS`; else ``ValueError`` naming ``init`` and them."""
    if init not in POLICY_INITS:
        raise ValueError(f"init={init!r} is not one of {', '.join(map(repr, POLICY_INITS))}")
    return init
