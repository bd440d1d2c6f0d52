"""``l2l.text.datasets``: few-shot text classification datasets returning raw strings."""

from ._news import NewsClassification as NewsClassification

__all__ = ["NewsClassification"]
