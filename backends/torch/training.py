"""The torch side of ``l2l.MetaLearner``: the library's learners and Adam, one step per batch."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ... import transforms
from ..._checks import check_labels, check_learning_rate, nonfinite_inputs, nonfinite_update_error
from ..._training import inner_optimizer
from .. import torch as _backend
from . import algorithms
from .vision import models


def build_model(name: str, ways: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """The named model (``l2l_multi._training.MODELS``), initialised after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    if name == "omniglot-cnn":
        model = models.OmniglotCNN(ways)
    elif name == "omniglot-fc":
        model = models.OmniglotFC(28 * 28, ways)
    elif name == "cnn4":
        model = models.CNN4(ways)
    elif name == "omniglot-cnn-pool":  # 28 -> 14 -> 7 -> 3 -> 1: a 64-d embedding
        model = models.CNN4(ways, channels=1, embedding_size=64)
    elif name == "cnn4-32":  # 32x32 inputs leave 2x2 maps after four poolings
        model = models.CNN4(ways, embedding_size=4 * 64)
    else:
        raise ValueError(f"model={name!r} is not known")
    return model.to(dtype)


_BATCH_NAMES = ("support_x", "support_y", "query_x", "query_y")


def _check_labels(support_y, query_y, classes: int) -> None:
    check_labels(support_y, "support_y", classes)
    check_labels(query_y, "query_y", classes)


class _PendingCheck:
    """One step's finite flags (``flags``: one per gradient, then the loss's) and what names them."""

    def __init__(self, iteration, loss, names, flags, batch):
        self.iteration, self.loss, self.names, self.flags, self.batch = iteration, loss, names, flags, batch
        self.saved: list = []

    def error(self) -> FloatingPointError:
        flags = self.flags.tolist()
        bad = [name for name, finite in zip(self.names, flags[:-1]) if not finite]
        bad_inputs = nonfinite_inputs(zip(_BATCH_NAMES, self.batch))
        return nonfinite_update_error(self.iteration, float(self.loss), bad, bad_inputs)


def _features_and_head(model: torch.nn.Module):
    if not (hasattr(model, "features") and hasattr(model, "classifier")):
        raise ValueError(f"{type(model).__name__} has no features/classifier split for this algorithm")
    return model.features, model.classifier


class MetaLearner:
    """See ``l2l_multi.MetaLearner``. Extra options: ``device``, ``dtype`` ("float32"/"float64"),
    ``path`` ("auto", "loop", "vmap"), ``head`` ("svm"/"ridge" for MetaOptNet), ``inner`` (see
    ``l2l_multi.MetaLearner``; names build ``l2l_multi.transforms``)."""

    def __init__(
        self,
        algorithm,
        model,
        ways,
        *,
        lr,
        meta_lr,
        adaptation_steps,
        first_order,
        seed,
        device=None,
        dtype="float32",
        path="auto",
        head="ridge",
        inner=None,
    ):
        self.name, self.ways, self.adaptation_steps, self.path = algorithm, ways, adaptation_steps, path
        self.device = torch.device("cpu" if device is None else device)
        self.dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
        self.model = build_model(model, ways, seed, self.dtype).to(self.device)
        inner = inner_optimizer(inner, algorithm, lr, transforms)  # a name -> l2l_multi.transforms
        step = {"lr": lr} if inner is None else {"inner": inner}
        if algorithm == "maml":
            self.algorithm = algorithms.MAML(self.model, first_order=first_order, **step)
        elif algorithm == "metasgd":
            self.algorithm = algorithms.MetaSGD(self.model, lr=lr, first_order=first_order, inner=inner)
        elif algorithm == "anil":
            self.algorithm = algorithms.ANIL(*_features_and_head(self.model), first_order=first_order, **step)
        elif algorithm == "protonet":
            self.algorithm = algorithms.ProtoNet(_features_and_head(self.model)[0])
        elif algorithm == "metaoptnet":
            self.algorithm = algorithms.MetaOptNet(_features_and_head(self.model)[0], head=head)
        elif algorithm == "reptile":
            self.algorithm = algorithms.Reptile(self.model, lr=lr)
        else:
            raise ValueError(f"algorithm={algorithm!r} is not known")
        self.algorithm.to(device=self.device, dtype=self.dtype)  # heads' own scalars included
        self.optimizer = torch.optim.Adam(self.algorithm.parameters(), lr=meta_lr)
        self.iterations = 0  # committed meta-updates (a plain int, part of state_dict)
        self._pending: _PendingCheck | None = None  # the last train_step(wait=False)'s check

    # -- data ----------------------------------------------------------------------
    def _tensors(self, *arrays):
        out = []
        for array in arrays:
            tensor = _backend.asarray(array, self.device)
            out.append(tensor.to(self.dtype) if tensor.is_floating_point() else tensor.long())
        return out

    def _metric_logits(self, sx, sy, qx):
        return self.algorithm(sx, sy, qx)  # ProtoNet / MetaOptNet: [B, q, ways]

    def _losses(self, sx, sy, qx, qy, steps):
        if self.name in ("protonet", "metaoptnet"):
            logits = self._metric_logits(sx, sy, qx)
            task_losses = torch.stack([F.cross_entropy(lg, y) for lg, y in zip(logits, qy)])
            return task_losses.mean(), logits
        result = algorithms.meta_batch_loss(
            self.algorithm, sx, sy, qx, qy, adaptation_steps=steps, path=self.path
        )
        return result.loss, result.query_logits

    # -- steps ---------------------------------------------------------------------
    def train_step(self, support_x, support_y, query_x, query_y, wait: bool = True) -> dict[str, Any]:
        """One meta-update on a batch ``[B, s, ...]``/``[B, s]``/``[B, q, ...]``/``[B, q]``.

        Returns ``loss`` and ``accuracy`` as Python floats, or with ``wait=False`` as detached 0-d
        tensors, so a CUDA step need not finish before the caller prepares the next batch
        (``float(value)`` reads them).

        Never commits a non-finite update: when the meta-loss or a meta-gradient is NaN/inf (or
        the inner loop refuses a non-finite support loss), the meta-parameters and Adam's state
        (moments and step count) stay as they were, ``iterations`` does not advance, and
        ``FloatingPointError`` names the iteration and what went non-finite. With ``wait=False``
        the check does not wait for the device: the update is applied and then undone on the
        device by a select on the finite flag, and the error is raised by the next call of
        ``train_step``, ``evaluate``, ``state_dict``, ``meta_parameters`` or ``check_finite()``
        (the first step of a fresh optimizer is checked at once). Labels outside ``[0, ways)``
        given as numpy arrays or CPU tensors raise ``ValueError`` naming the argument."""
        _check_labels(support_y, query_y, self.ways)
        sx, sy, qx, qy = self._tensors(support_x, support_y, query_x, query_y)
        # the previous step's flag is read after the copies, so the device waits only for launches
        self.check_finite()
        iteration = self.iterations + 1
        self.algorithm.train()
        self.optimizer.zero_grad()
        try:
            if self.name == "reptile":
                loss, logits = self._reptile_gradients(sx, sy, qx, qy)
            else:
                loss, logits = self._losses(sx, sy, qx, qy, self.adaptation_steps)
                loss.backward()
        except FloatingPointError as error:  # the inner loop refused a non-finite support loss
            self.optimizer.zero_grad()
            bad_inputs = nonfinite_inputs(zip(_BATCH_NAMES, (sx, sy, qx, qy)))
            error_out = nonfinite_update_error(iteration, float("nan"), [], bad_inputs, reason=str(error))
            raise error_out from error
        # one flag per gradient and one for the loss, reduced on the device: reading it is one sync
        names = [name for name, p in self.algorithm.named_parameters() if p.grad is not None]
        grads = [p.grad for p in self.algorithm.parameters() if p.grad is not None]
        flags = torch.stack([torch.isfinite(g).all() for g in grads] + [torch.isfinite(loss.detach())])
        check = _PendingCheck(iteration, loss.detach(), names, flags, (sx, sy, qx, qy))
        if wait or not self.optimizer.state:
            if not bool(flags.all()):
                self.optimizer.zero_grad()
                raise check.error()
            self.optimizer.step()
        else:
            check.saved = self._guarded_step(flags.all())
            self._pending = check
        self.iterations = iteration
        metrics = {"loss": loss.detach(), "accuracy": (logits.detach().argmax(-1) == qy).float().mean()}
        return {k: float(v) for k, v in metrics.items()} if wait else metrics

    def _guarded_step(self, finite: torch.Tensor) -> list:
        """Adam's step, undone on the device where ``finite`` (a 0-d bool tensor) is false, without
        reading it; returns what ``check_finite`` needs to restore the rest (host-side tensors
        such as Adam's step counts) once the flag is read."""
        state = self.optimizer.state
        saved = []
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                old_state = None
                if p in state:
                    old_state = {k: v.clone() if torch.is_tensor(v) else v for k, v in state[p].items()}
                saved.append((p, p.detach().clone(), old_state))
        self.optimizer.step()
        with torch.no_grad():
            for p, old, old_state in saved:
                p.copy_(torch.where(finite, p, old))
                for key, value in (state[p].items() if p in state and old_state else ()):
                    if torch.is_tensor(value) and value.device == finite.device and key in old_state:
                        value.copy_(torch.where(finite, value, old_state[key]))
        return saved

    def check_finite(self) -> None:
        """Raise the ``FloatingPointError`` of a non-finite ``train_step(wait=False)``, whose update
        was undone (see ``train_step``); waits for that step. Called by ``train_step``,
        ``evaluate``, ``state_dict`` and ``meta_parameters``, so an error is never lost."""
        check, self._pending = self._pending, None
        if check is None or bool(check.flags.all()):
            return
        state = self.optimizer.state
        with torch.no_grad():
            for p, old, old_state in check.saved:
                p.copy_(old)
                if old_state is None:
                    state.pop(p, None)
                else:
                    state[p] = old_state
        self.iterations = check.iteration - 1
        raise check.error()

    def _reptile_gradients(self, sx, sy, qx, qy):
        losses, logits = [], []
        for task in range(sx.shape[0]):
            learner = self.algorithm.clone()
            for _ in range(self.adaptation_steps):
                learner.adapt(F.cross_entropy(learner(sx[task]), sy[task]))
            self.algorithm.accumulate(learner, weight=1.0 / sx.shape[0])
            with torch.no_grad():
                outputs = learner(qx[task])
            losses.append(F.cross_entropy(outputs, qy[task]))
            logits.append(outputs)
        return torch.stack(losses).mean(), torch.stack(logits)

    def evaluate(
        self, support_x, support_y, query_x, query_y, adaptation_steps=None, ways=None
    ) -> dict[str, Any]:
        """Adapt on each support set (``adaptation_steps``, default the training value), score the
        queries; returns ``loss``, ``accuracy`` and ``task_accuracies`` (numpy ``[B]``).

        ``ways``: classes per task when it differs from training (ProtoNet, MetaOptNet only: the
        torch heads read it from the labels, so it is only checked here)."""
        if ways is not None and ways != self.ways and self.name not in ("protonet", "metaoptnet"):
            raise ValueError(
                f"ways={ways!r}: {self.name} has a {self.ways}-way output layer; only protonet and "
                "metaoptnet evaluate with other ways"
            )
        steps = self.adaptation_steps if adaptation_steps is None else adaptation_steps
        self.check_finite()
        _check_labels(support_y, query_y, self.ways if ways is None else ways)
        sx, sy, qx, qy = self._tensors(support_x, support_y, query_x, query_y)
        if self.name == "reptile":
            logits = torch.stack([self._adapted_logits(sx[t], sy[t], qx[t], steps) for t in range(len(sx))])
            loss = torch.stack([F.cross_entropy(lg, y) for lg, y in zip(logits, qy)]).mean()
        else:
            loss, logits = self._losses(sx, sy, qx, qy, steps)
        accuracies = (logits.argmax(-1) == qy).float().mean(-1).detach().cpu().numpy()
        self.optimizer.zero_grad()  # evaluation built graphs but must not leave gradients behind
        return {
            "loss": float(loss.detach()),
            "accuracy": float(accuracies.mean()),
            "task_accuracies": accuracies,
        }

    def _adapted_logits(self, sx, sy, qx, steps):
        learner = self.algorithm.clone()
        for _ in range(steps):
            learner.adapt(F.cross_entropy(learner(sx), sy))
        with torch.no_grad():
            return learner(qx)

    def set_meta_lr(self, meta_lr: float) -> None:
        """Sets Adam's learning rate (for schedules); it is part of ``state_dict``."""
        check_learning_rate(meta_lr, "meta_lr", arrays=())
        for group in self.optimizer.param_groups:
            group["lr"] = float(meta_lr)

    # -- state ---------------------------------------------------------------------
    def meta_parameters(self) -> dict[str, np.ndarray]:
        """``{name: array}`` of everything meta-learned (model, and e.g. Meta-SGD's rates)."""
        self.check_finite()
        return {name: p.detach().cpu().numpy().copy() for name, p in self.algorithm.named_parameters()}

    def state_dict(self) -> dict[str, Any]:
        """Meta-parameters and optimizer state (a checkpoint that resumes exactly)."""
        self.check_finite()  # a refused wait=False step raises here rather than being saved
        return {
            "algorithm": self.algorithm.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "iterations": self.iterations,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores ``state_dict()``'s values (tensors may come on the CPU: they are copied to the
        learner's device); strict, so another model's state is refused by name."""
        if not isinstance(state, dict) or not {"algorithm", "optimizer"} <= set(state):
            raise ValueError("state must be a dict from MetaLearner.state_dict() (algorithm, optimizer)")
        self.algorithm.load_state_dict(state["algorithm"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.iterations, self._pending = int(state.get("iterations", 0)), None
