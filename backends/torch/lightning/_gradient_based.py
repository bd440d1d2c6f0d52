"""``LightningMAML`` and ``LightningANIL``: learn2learn 0.2.0's Lightning modules for MAML and
ANIL, on this library's ``MAML`` (second order, plain SGD inner loop)."""

from __future__ import annotations

import functools
from argparse import ArgumentParser

import torch

from ..algorithms import MAML
from ._episodic import LightningEpisodicModule, episode_accuracy, split_episode, unbatch

_ADAPTATION_DEFAULTS = {"adaptation_steps": 1, "adaptation_lr": 0.1}


def _check_ways(module) -> None:
    if module.train_ways != module.test_ways:
        raise ValueError(
            f"{type(module).__name__} needs train_ways == test_ways (one classifier head), got "
            f"train_ways={module.train_ways} and test_ways={module.test_ways}"
        )


def _add_adaptation_args(parent_parser: ArgumentParser) -> ArgumentParser:
    parser = LightningEpisodicModule.add_model_specific_args(parent_parser)
    parser.add_argument("--adaptation_steps", type=int, default=_ADAPTATION_DEFAULTS["adaptation_steps"])
    parser.add_argument("--adaptation_lr", type=float, default=_ADAPTATION_DEFAULTS["adaptation_lr"])
    parser.add_argument(
        "--data_parallel",
        action="store_true",
        help="accepted for learn2learn's scripts; use Lightning's strategies instead",
    )
    return parser


def with_autograd(meta_learn):
    """Run ``meta_learn(self, batch, ...)`` with autograd on: Lightning 2 tests under
    ``torch.inference_mode`` (its default), where ``enable_grad`` alone cannot adapt; the batch's
    inference tensors are copied into ordinary ones."""

    @functools.wraps(meta_learn)
    def run(self, batch, *args, **kwargs):
        with torch.inference_mode(False), torch.enable_grad():
            batch = tuple(t.clone() if isinstance(t, torch.Tensor) and t.is_inference() else t for t in batch)
            return meta_learn(self, batch, *args, **kwargs)

    return run


def _adapt_and_evaluate(learner, loss, support, support_labels, query, query_labels, steps):
    for _ in range(steps):
        learner.adapt(loss(learner(support), support_labels))
    predictions = learner(query)
    return loss(predictions, query_labels), episode_accuracy(predictions, query_labels)


class LightningMAML(LightningEpisodicModule):
    """MAML (Finn et al. 2017) as a ``LightningModule``: each batch is one task, adapted with
    ``adaptation_steps`` second-order SGD steps at ``adaptation_lr`` on its support set; the
    query loss is the training loss.

    Args:
        model: the ``torch.nn.Module`` to meta-learn (wrapped as ``self.model = MAML(model)``).
        loss: ``loss(logits, labels) -> 0-d tensor``, default mean cross-entropy.
        **kwargs: learn2learn's hyper-parameters: ``train_ways``, ``train_shots``,
            ``train_queries``, ``test_ways`` (must equal ``train_ways``), ``test_shots``,
            ``test_queries``, ``lr``, ``scheduler_step``, ``scheduler_decay`` (see
            ``LightningEpisodicModule``), ``adaptation_steps`` (1), ``adaptation_lr`` (0.1);
            ``data_parallel`` is accepted and ignored.

    A batch is ``(data [ways * (shots + queries), ...], labels [ways * (shots + queries)])``,
    e.g. ``TaskDataset.sample()`` through ``EpisodicBatcher``.

    Example:
        >>> import torch
        >>> maml = LightningMAML(torch.nn.Linear(4, 2), train_ways=2, test_ways=2, adaptation_lr=0.5)
        >>> x, y = torch.randn(4, 4), torch.tensor([0, 0, 1, 1])
        >>> loss, accuracy = maml.meta_learn((x, y), 0, ways=2, shots=1, queries=1)
        >>> loss.shape, 0.0 <= accuracy.item() <= 1.0
        (torch.Size([]), True)
    """

    adaptation_steps = 1
    adaptation_lr = 0.1

    def __init__(self, model: torch.nn.Module, loss=None, **kwargs):
        super().__init__()
        self.loss = torch.nn.CrossEntropyLoss(reduction="mean") if loss is None else loss
        self._read_episodic_arguments(kwargs, _ADAPTATION_DEFAULTS)
        _check_ways(self)
        self.model = MAML(model, lr=self.adaptation_lr, first_order=False)

    @staticmethod
    def add_model_specific_args(parent_parser: ArgumentParser) -> ArgumentParser:
        """learn2learn's flags: the episodic ones plus ``--adaptation_steps``, ``--adaptation_lr``."""
        return _add_adaptation_args(parent_parser)

    @with_autograd  # validation and testing adapt too
    def meta_learn(self, batch, batch_idx, ways, shots, queries):
        """``(query loss, query accuracy)`` of one task after adaptation (0-d tensors)."""
        learner = self.model.clone()
        learner.train()
        support, support_labels, query, query_labels = split_episode(*batch, ways, shots, queries)
        return _adapt_and_evaluate(
            learner, self.loss, support, support_labels, query, query_labels, self.adaptation_steps
        )


class LightningANIL(LightningEpisodicModule):
    """ANIL (Raghu et al. 2020) as a ``LightningModule``: ``features`` embeds the task once and
    only ``classifier`` is adapted (as in ``LightningMAML``); both are meta-learned.

    Args:
        features: the embedding network (``[N, ...] -> [N, d]``).
        classifier: the head (``[N, d] -> [N, ways]``), wrapped as ``self.classifier = MAML(...)``.
        loss: default mean cross-entropy.
        **kwargs: as ``LightningMAML``.

    Example:
        >>> import torch
        >>> anil = LightningANIL(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2), train_ways=2, test_ways=2)
        >>> loss, accuracy = anil.meta_learn((torch.randn(4, 4), torch.tensor([0, 0, 1, 1])), 0, 2, 1, 1)
        >>> loss.requires_grad
        True
    """

    adaptation_steps = 1
    adaptation_lr = 0.1

    def __init__(self, features: torch.nn.Module, classifier: torch.nn.Module, loss=None, **kwargs):
        super().__init__()
        self.loss = torch.nn.CrossEntropyLoss(reduction="mean") if loss is None else loss
        self._read_episodic_arguments(kwargs, _ADAPTATION_DEFAULTS)
        _check_ways(self)
        self.features = features
        self.classifier = MAML(classifier, lr=self.adaptation_lr)

    @staticmethod
    def add_model_specific_args(parent_parser: ArgumentParser) -> ArgumentParser:
        """learn2learn's flags: the episodic ones plus ``--adaptation_steps``, ``--adaptation_lr``."""
        return _add_adaptation_args(parent_parser)

    @with_autograd
    def meta_learn(self, batch, batch_idx, ways, shots, queries):
        """``(query loss, query accuracy)`` of one task after adapting the head (0-d tensors)."""
        self.features.train()
        learner = self.classifier.clone()
        learner.train()
        data, labels = unbatch(*batch)
        support, support_labels, query, query_labels = split_episode(
            self.features(data), labels, ways, shots, queries
        )
        return _adapt_and_evaluate(
            learner, self.loss, support, support_labels, query, query_labels, self.adaptation_steps
        )
