"""``l2l.text``: few-shot text datasets (raw strings, no tokenizer or framework needed)."""

from . import datasets as datasets

__all__ = ["datasets"]
