"""``l2l.vision`` for the torch backend: few-shot vision models (``models``)."""
