"""``l2l.vision`` for the jax backend: few-shot vision models as flax linen modules (``models``)."""
