"""``LightningEpisodicModule``: the episodic train/validation/test loop shared by the Lightning
algorithms, with learn2learn 0.2.0's hyper-parameters, defaults and logged metric names."""

from __future__ import annotations

from argparse import ArgumentParser

import torch

from ._import import pl

# learn2learn's hyper-parameters common to every episodic module, with their defaults
EPISODIC_DEFAULTS = {
    "train_ways": 5,
    "train_shots": 1,
    "train_queries": 1,
    "test_ways": 5,
    "test_shots": 1,
    "test_queries": 1,
    "lr": 0.001,
    "scheduler_step": 20,
    "scheduler_decay": 1.0,
}


def unbatch(data, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """Tensors of one task; a leading batch axis of size 1 (a DataLoader's batch) is dropped."""
    data, labels = torch.as_tensor(data), torch.as_tensor(labels)
    if labels.dim() == 2 and labels.shape[0] == 1:
        data, labels = data[0], labels[0]
    return data, labels


def split_episode(data: torch.Tensor, labels: torch.Tensor, ways: int, shots: int, queries: int):
    """Split one task into support and query sets, ``shots`` and ``queries`` examples per class.

    Args:
        data: ``[ways * (shots + queries), ...]`` (a leading batch axis of size 1 is dropped).
        labels: ``[ways * (shots + queries)]`` integer class labels.

    Returns:
        ``(support, support_labels, query, query_labels)``. The examples are grouped by label
        with a stable sort first, so the split does not depend on the task's order (learn2learn
        sorts only for its metric-based modules and expects MAML's tasks grouped already).

    Example:
        >>> import torch
        >>> s, sl, q, ql = split_episode(torch.arange(6.0), torch.tensor([1, 0, 1, 0, 1, 0]), 2, 1, 2)
        >>> s.tolist(), sl.tolist(), q.tolist(), ql.tolist()
        ([1.0, 0.0], [0, 1], [3.0, 5.0, 2.0, 4.0], [0, 0, 1, 1])
    """
    data, labels = unbatch(data, labels)
    expected = ways * (shots + queries)
    if labels.dim() != 1 or labels.shape[0] != expected or data.shape[0] != expected:
        raise ValueError(
            f"a task of {ways} ways x ({shots} shots + {queries} queries) needs {expected} examples, "
            f"got data {tuple(data.shape)} and labels {tuple(labels.shape)}"
        )
    order = torch.sort(labels, stable=True).indices
    data, labels = data[order], labels[order]
    position = torch.arange(expected, device=labels.device) % (shots + queries)
    support = position < shots
    return data[support], labels[support], data[~support], labels[~support]


def episode_accuracy(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of ``argmax(predictions, 1) == targets`` as a 0-d float tensor."""
    return (predictions.argmax(dim=1).view(targets.shape) == targets).float().mean()


class LightningEpisodicModule(pl.LightningModule):
    """Base class of the episodic Lightning modules: subclasses define
    ``meta_learn(batch, batch_idx, ways, shots, queries) -> (loss, accuracy)``.

    The keyword arguments of the subclasses (``train_ways``, ``train_shots``, ``train_queries``,
    ``test_ways``, ``test_shots``, ``test_queries``, ``lr``, ``scheduler_step``,
    ``scheduler_decay``) default to these class attributes, as in learn2learn. Training logs
    ``train_loss``/``train_accuracy``, validation ``valid_loss``/``valid_accuracy`` and testing
    ``test_loss``/``test_accuracy`` (epoch means). The optimizer is Adam at ``lr`` with a
    ``StepLR(step_size=scheduler_step, gamma=scheduler_decay)`` schedule.

    Example:
        >>> parser = LightningEpisodicModule.add_model_specific_args(ArgumentParser(add_help=False))
        >>> parser.parse_args(["--train_ways", "20"]).train_ways
        20
    """

    train_shots = 1
    train_queries = 1
    train_ways = 5
    test_shots = 1
    test_queries = 1
    test_ways = 5
    lr = 0.001
    scheduler_step = 20
    scheduler_decay = 1.0

    def _read_episodic_arguments(self, kwargs: dict, extra: dict) -> None:
        """Set the hyper-parameters from ``kwargs`` (defaults: ``EPISODIC_DEFAULTS`` and ``extra``)
        and record them with ``save_hyperparameters``."""
        defaults = {**EPISODIC_DEFAULTS, **extra}
        unknown = sorted(set(kwargs) - set(defaults) - {"data_parallel"})
        if unknown:
            raise TypeError(f"unexpected keyword arguments {unknown}; allowed: {sorted(defaults)}")
        values = {name: kwargs.get(name, default) for name, default in defaults.items()}
        for name, value in values.items():
            setattr(self, name, value)
        self.save_hyperparameters(values)

    @staticmethod
    def add_model_specific_args(parent_parser: ArgumentParser) -> ArgumentParser:
        """An ``ArgumentParser`` extending ``parent_parser`` with ``--train_ways`` ...
        ``--scheduler_decay`` (learn2learn's flags and defaults)."""
        parser = ArgumentParser(parents=[parent_parser], add_help=True, conflict_handler="resolve")
        for name, default in EPISODIC_DEFAULTS.items():
            parser.add_argument(f"--{name}", type=type(default), default=default)
        return parser

    def meta_learn(self, batch, batch_idx, ways, shots, queries):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define meta_learn")

    def _step(self, batch, batch_idx, stage: str, ways: int, shots: int, queries: int) -> torch.Tensor:
        loss, accuracy = self.meta_learn(batch, batch_idx, ways, shots, queries)
        epoch_mean = dict(on_step=False, on_epoch=True, logger=True)
        self.log(f"{stage}_loss", loss.item(), prog_bar=False, **epoch_mean)
        self.log(f"{stage}_accuracy", accuracy.item(), prog_bar=True, **epoch_mean)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, batch_idx, "train", self.train_ways, self.train_shots, self.train_queries)

    def validation_step(self, batch, batch_idx):
        loss = self._step(batch, batch_idx, "valid", self.test_ways, self.test_shots, self.test_queries)
        return loss.item()

    def test_step(self, batch, batch_idx):
        loss = self._step(batch, batch_idx, "test", self.test_ways, self.test_shots, self.test_queries)
        return loss.item()

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)
        schedule = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=self.scheduler_step, gamma=self.scheduler_decay
        )
        return [optimizer], [schedule]
