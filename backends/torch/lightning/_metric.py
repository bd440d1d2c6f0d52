"""``LightningPrototypicalNetworks`` and ``LightningMetaOptNet``: learn2learn 0.2.0's Lightning
modules for metric-based few-shot learning, on this library's classifier heads."""

from __future__ import annotations

from argparse import ArgumentParser

import torch

from ..nn import PrototypicalClassifier, SVClassifier
from ._episodic import LightningEpisodicModule, episode_accuracy, split_episode, unbatch


class LightningPrototypicalNetworks(LightningEpisodicModule):
    """Prototypical networks (Snell et al. 2017) as a ``LightningModule``: the support embeddings'
    class means are the prototypes and the query logits are negative squared distances.

    Args:
        features: the embedding network (``[N, ...] -> [N, d]``), meta-learned.
        loss: ``loss(logits, labels)``, default mean cross-entropy.
        **kwargs: the episodic hyper-parameters (see ``LightningEpisodicModule``) and
            ``distance_metric`` (``"euclidean"``, default, or ``"cosine"``); ``data_parallel``
            is accepted and ignored.

    Example:
        >>> import torch
        >>> protonet = LightningPrototypicalNetworks(torch.nn.Linear(4, 3), train_ways=2)
        >>> loss, accuracy = protonet.meta_learn((torch.randn(4, 4), torch.tensor([1, 0, 1, 0])), 0, 2, 1, 1)
        >>> loss.shape
        torch.Size([])
    """

    distance_metric = "euclidean"

    def __init__(self, features: torch.nn.Module, loss=None, **kwargs):
        super().__init__()
        self.loss = torch.nn.CrossEntropyLoss(reduction="mean") if loss is None else loss
        self._read_episodic_arguments(kwargs, self._extra_defaults())
        self.features = features
        self.classifier = self._make_classifier()

    def _extra_defaults(self) -> dict:
        return {"distance_metric": LightningPrototypicalNetworks.distance_metric}

    def _make_classifier(self) -> torch.nn.Module:
        return PrototypicalClassifier(distance=self.distance_metric)

    @staticmethod
    def add_model_specific_args(parent_parser: ArgumentParser) -> ArgumentParser:
        """learn2learn's flags: the episodic ones plus ``--distance_metric``."""
        parser = LightningEpisodicModule.add_model_specific_args(parent_parser)
        default = LightningPrototypicalNetworks.distance_metric
        parser.add_argument("--distance_metric", type=str, default=default)
        parser.add_argument(
            "--data_parallel",
            action="store_true",
            help="accepted for learn2learn's scripts; use Lightning's strategies instead",
        )
        return parser

    def meta_learn(self, batch, batch_idx, ways, shots, queries):
        """``(query loss, query accuracy)`` of one task (0-d tensors)."""
        self.features.train()
        data, labels = unbatch(*batch)
        support, support_labels, query, query_labels = split_episode(
            self.features(data), labels, ways, shots, queries
        )
        self.classifier.fit_(support, support_labels)
        logits = self.classifier(query)
        return self.loss(logits, query_labels), episode_accuracy(logits, query_labels)


class LightningMetaOptNet(LightningPrototypicalNetworks):
    """MetaOptNet (Lee et al. 2019) as a ``LightningModule``: a multi-class SVM fitted on the
    support embeddings (differentiable QP) classifies the queries.

    Args:
        features: the embedding network, meta-learned.
        loss: default mean cross-entropy.
        **kwargs: the episodic hyper-parameters, ``svm_C_reg`` (0.1) and ``svm_max_iters`` (15,
            the QP solver's iteration budget; this library's solver raises if it has not
            converged within it, where learn2learn returns the unconverged iterate).

    Example:
        >>> import torch
        >>> head = LightningMetaOptNet(torch.nn.Linear(4, 3), train_ways=2, svm_max_iters=50)
        >>> loss, _ = head.meta_learn((torch.randn(4, 4), torch.tensor([0, 1, 0, 1])), 0, 2, 1, 1)
        >>> loss.requires_grad
        True
    """

    svm_C_reg = 0.1
    svm_max_iters = 15

    def _extra_defaults(self) -> dict:
        return {
            "svm_C_reg": LightningMetaOptNet.svm_C_reg,
            "svm_max_iters": LightningMetaOptNet.svm_max_iters,
        }

    def _make_classifier(self) -> torch.nn.Module:
        return SVClassifier(C_reg=self.svm_C_reg, max_iterations=self.svm_max_iters, normalize=False)

    @staticmethod
    def add_model_specific_args(parent_parser: ArgumentParser) -> ArgumentParser:
        """learn2learn's flags: the episodic ones plus ``--svm_C_reg``, ``--svm_max_iters``."""
        parser = LightningEpisodicModule.add_model_specific_args(parent_parser)
        parser.add_argument("--svm_C_reg", type=float, default=LightningMetaOptNet.svm_C_reg)
        parser.add_argument("--svm_max_iters", type=int, default=LightningMetaOptNet.svm_max_iters)
        parser.add_argument(
            "--data_parallel",
            action="store_true",
            help="accepted for learn2learn's scripts; use Lightning's strategies instead",
        )
        return parser
