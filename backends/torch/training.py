"""The torch backend step of ``l2l.MetaLearner``: the library's learners and Adam, one autograd
meta-step per batch. ``l2l_multi._training.MetaLearner`` holds the shared logic (validation, the
step counter, the host side of the non-finite guard); this module supplies what only torch does."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ... import transforms
from ..._learner_options import check_inner_state_entry, inner_optimizer
from ..._registry import AlgorithmSpec, ModelSpec
from ...transforms._tree import tree_leaves, tree_map
from .. import torch as _backend
from . import _non_transductive, algorithms
from ._builders import ALGORITHM_BUILDERS as ALGORITHM_BUILDERS
from ._builders import MLP as MLP
from ._builders import MODEL_BUILDERS as MODEL_BUILDERS
from ._builders import build_model as build_model
from ._rank_share import RankShare, joined_group
from ._trees import flax_tree, torch_tree

LOSSES = {"cross-entropy": F.cross_entropy, "mse": F.mse_loss}


def _meta_batch_loss(algorithm, batch, loss, steps, task_map):
    """``(loss, task_losses, query_logits)`` through the contract's ``meta_batch_loss`` over the
    learner's live meta-parameters (so ``backward`` fills their ``.grad``)."""
    result = algorithms.meta_batch_loss(
        algorithm, algorithm.meta_parameters(), *batch, loss=loss, steps=steps, task_map=task_map
    )
    return result.loss, result.task_losses, result.query_logits


class _Outcome:
    """One train step as the core's guard sees it: ``loss``, ``accuracy`` (0-d tensors),
    ``finite()``, ``bad_names()``, ``undo()``."""

    def __init__(self, owner, loss, accuracy, names, flags, checked):
        self.owner, self.loss, self.accuracy, self.names, self.flags = owner, loss, accuracy, names, flags
        self.checked, self.saved = checked, []
        self.inner_state = None  # the carried inner state before the step (Reptile)

    def finite(self) -> bool:
        return bool(self.flags.all())

    def bad_names(self) -> list[str]:
        return [name for name, finite in zip(self.names, self.flags.tolist()[:-1]) if not finite]

    def undo(self) -> None:
        """Put back the parameters and Adam's state saved before a guarded (wait=False) step."""
        state = self.owner.optimizer.state
        with torch.no_grad():
            for p, old, old_state in self.saved:
                p.copy_(old)
                if old_state is None:
                    state.pop(p, None)
                else:
                    state[p] = old_state
        self.owner.optimizer.zero_grad()
        if self.owner.carried:
            self.owner.inner_state = self.inner_state


class TorchStep:
    """The torch half of ``MetaLearner``: see ``make_backend_step``."""

    def __init__(
        self,
        spec: AlgorithmSpec,
        model: ModelSpec,
        ways: int,
        *,
        lr,
        meta_lr,
        adaptation_steps,
        first_order,
        seed,
        loss,
        device=None,
        dtype="float32",
        task_map="auto",
        head=None,
        inner=None,
        batch_norm="batch",
        inner_batch=None,
        inner_order=None,
        meta_optimizer="adam",
        inner_state="task",
    ):
        if spec.name not in ALGORITHM_BUILDERS:
            raise ValueError(f"algorithm={spec.name!r} has no torch builder (ALGORITHM_BUILDERS)")
        self.spec, self.ways, self.task_map, self.lr = spec, ways, task_map, lr
        self.loss_fn = LOSSES[loss]
        self.device = torch.device("cpu" if device is None else device)
        self.dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
        self.model = build_model(model, ways, seed, self.dtype).to(self.device)
        inner = inner_optimizer(inner, spec.name, lr, transforms)  # a name -> l2l_multi.transforms
        sized = {"adaptation_steps": adaptation_steps} if "adaptation_steps" in spec.options else {}
        if inner_batch is not None:  # the core allowed it for the algorithms that take it
            sized["inner_batch"] = inner_batch
        if inner_order is not None:
            sized["inner_order"] = inner_order
        self.algorithm = ALGORITHM_BUILDERS[spec.name](
            self.model, lr=lr, first_order=first_order, inner=inner, head=head, **sized
        )
        self.algorithm.to(device=self.device, dtype=self.dtype)  # heads' own scalars included
        meta_class = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[meta_optimizer]
        self.optimizer = meta_class(self.algorithm.parameters(), lr=meta_lr)
        self.adaptation_steps = adaptation_steps
        # a process group joined before the learner: each rank computes its share of every batch
        self.share = RankShare(self.algorithm, self.device) if joined_group() else None
        # batch_norm="running" (the core built the model with torch's default BatchNorm2d): train
        # steps update the running statistics, evaluation normalises with them
        self.running = batch_norm == "running"
        if self.running and self.share is not None:
            raise ValueError(
                "batch_norm='running' runs in one process: each rank would update its own running "
                "statistics from its share of the tasks"
            )
        # inner_state="carried" (Reptile): one inner-optimizer state, threaded through the tasks of
        # every train step in order and committed with the step; evaluation starts from it
        self.carried, self.inner_state, self._next_inner_state = inner_state == "carried", None, None
        if self.carried:
            if self.share is not None:
                raise ValueError(
                    "inner_state='carried' runs in one process: the state passes from task to task in order"
                )
            self.inner_state = self.algorithm.inner_transform().init(list(self.algorithm.module.parameters()))

    def _buffers(self) -> list[torch.Tensor]:
        """The running statistics (every buffer of the algorithm; none with batch_norm="batch")."""
        return list(self.algorithm.buffers()) if self.running else []

    # -- data ------------------------------------------------------------------------
    def convert(self, *arrays) -> tuple:
        out = []
        for array in arrays:
            tensor = _backend.asarray(array, self.device)
            out.append(tensor.to(self.dtype) if tensor.is_floating_point() else tensor.long())
        return tuple(out)

    # -- losses ----------------------------------------------------------------------
    def _losses(self, batch, steps):
        """``(mean loss, task losses [B], logits [B, q, ways])``; fills no gradient."""
        sx, sy, qx, qy = batch
        if self.spec.kind == "metric":
            logits = self.algorithm(sx, sy, qx)  # ProtoNet / MetaOptNet: [B, q, ways]
            task_losses = torch.stack([self.loss_fn(lg, y) for lg, y in zip(logits, qy)])
            return task_losses.mean(), task_losses, logits
        return _meta_batch_loss(self.algorithm, batch, self.loss_fn, steps, self.task_map)

    def _adapt(self, x, y, steps, inner_state=None):
        """A clone adapted on ``(x [s, ...], y [s])``, its inner optimizer starting from
        ``inner_state`` (None: the carried state, or a fresh one when none is carried)."""
        learner = self.algorithm.clone()
        learner.inner_state = self.inner_state if inner_state is None else inner_state
        for batch_x, batch_y in self.algorithm.inner_batches(x, y, steps):  # Reptile's minibatches
            learner.adapt(self.loss_fn(learner(batch_x), batch_y))
        return learner

    def _reptile_gradients(self, batch, steps):
        sx, sy, qx, qy = batch
        losses, logits, state = [], [], self.inner_state
        for task in range(sx.shape[0]):
            learner = self._adapt(sx[task], sy[task], steps, state)
            state = learner.inner_state if self.carried else None
            self.algorithm.accumulate(learner, weight=1.0 / sx.shape[0])
            with torch.no_grad():
                outputs = learner(qx[task])
            losses.append(self.loss_fn(outputs, qy[task]))
            logits.append(outputs)
        self._next_inner_state = state  # committed by ``step`` with the update
        return torch.stack(losses).mean(), torch.stack(logits)

    def _backward(self, batch, steps):
        """The meta-loss and logits, with the meta-gradients in ``.grad``."""
        self.optimizer.zero_grad()
        try:
            if self.spec.kind == "reptile":
                return self._reptile_gradients(batch, steps)
            loss, _, logits = self._losses(batch, steps)
            loss.backward()
            return loss, logits
        except FloatingPointError:
            self.optimizer.zero_grad()
            raise

    # -- steps -----------------------------------------------------------------------
    def step(self, batch, wait: bool) -> _Outcome:
        """One meta-update (applied unless found non-finite; ``wait=False`` after the first step:
        applied and undone on the device by a select, see ``_guarded_step``)."""
        self.algorithm.train()
        statistics = [buffer.clone() for buffer in self._buffers()]  # kept if the step is refused
        loss, logits, accuracy = self._shared_backward(batch, self.adaptation_steps)
        # one flag per gradient and one for the loss, reduced on the device: reading it is one sync
        named = [(name, p.grad) for name, p in self.algorithm.named_parameters() if p.grad is not None]
        flags = torch.stack([torch.isfinite(g).all() for _, g in named] + [torch.isfinite(loss.detach())])
        checked = wait or not self.optimizer.state  # a fresh Adam has no state to roll back to
        outcome = _Outcome(self, loss.detach(), accuracy, [name for name, _ in named], flags, checked)
        outcome.inner_state = self.inner_state  # put back by ``undo`` if the step is refused
        if checked:
            if outcome.finite():
                self.optimizer.step()
                self._commit_inner_state()
            else:
                self.optimizer.zero_grad()
                self._restore_buffers(statistics)
        else:
            outcome.saved = self._guarded_step(flags.all())
            self._restore_buffers(statistics, keep_new=flags.all())
            self._commit_inner_state()
        return outcome

    def _commit_inner_state(self) -> None:
        if self.carried:
            self.inner_state = self._next_inner_state

    def _restore_buffers(self, saved: list[torch.Tensor], keep_new: torch.Tensor | None = None) -> None:
        """Put back the running statistics ``saved`` before a step; with ``keep_new`` (a 0-d bool
        tensor) only where it is false, selected on the device without reading it."""
        with torch.no_grad():
            for buffer, old in zip(self._buffers(), saved):
                buffer.copy_(old if keep_new is None else torch.where(keep_new, buffer, old))

    def _shared_backward(self, batch, steps):
        """``(loss, logits or None, accuracy or None)`` with the meta-gradients in ``.grad``; in a
        process group, of this rank's share of the tasks, then averaged over all tasks."""
        classify = self.loss_fn is F.cross_entropy
        if self.share is not None:
            return self.share.backward(
                batch,
                lambda share: self._backward(share, steps),
                self.optimizer,
                classify,
                self.algorithm.parameters(),
            )
        loss, logits = self._backward(batch, steps)
        return loss, logits, (logits.detach().argmax(-1) == batch[3]).float().mean() if classify else None

    def _guarded_step(self, finite: torch.Tensor) -> list:
        """Adam's step, undone on the device where ``finite`` (a 0-d bool tensor) is false, without
        reading it; returns what ``_Outcome.undo`` needs to restore the rest (host-side values
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
                for key, value in state[p].items() if p in state and old_state else ():
                    if torch.is_tensor(value) and value.device == finite.device and key in old_state:
                        value.copy_(torch.where(finite, value, old_state[key]))
        return saved

    def evaluate(
        self, batch, steps: int, ways: int, transductive: bool = True, inner_batch=None, inner_order=None
    ):
        """``(task losses [B], task accuracies [B] or None)`` as numpy (the torch heads read
        ``ways`` from the labels); ``transductive=False`` scores each query on the batch
        ``[support ; query]`` (``_non_transductive``); ``inner_batch`` / ``inner_order``:
        Reptile's samples per inner step and their order for this call (None: its own). In a
        process group each rank scores its share, then they gather every task's values in order."""
        with self._inner_batch(inner_batch, inner_order):
            if self.share is None:
                return self._evaluate_tasks(batch, steps, transductive)
            empty = np.zeros(0, dtype=np.dtype(str(self.dtype).removeprefix("torch.")))
            nothing = (empty, empty.astype(np.float32) if self.loss_fn is F.cross_entropy else None)
            return self.share.evaluate(
                batch, lambda share: self._evaluate_tasks(share, steps, transductive), nothing
            )

    @contextlib.contextmanager
    def _inner_batch(self, size, order=None):
        """Reptile's ``batch_size`` and ``batch_order`` set to ``size`` and ``order`` inside the
        block (None: left alone)."""
        chosen = {
            name: value for name, value in (("batch_size", size), ("batch_order", order)) if value is not None
        }
        saved = {name: getattr(self.algorithm, name) for name in chosen}
        for name, value in chosen.items():
            setattr(self.algorithm, name, value)
        try:
            yield
        finally:
            for name, value in saved.items():
                setattr(self.algorithm, name, value)

    def _evaluate_tasks(self, batch, steps: int, transductive: bool = True):
        sx, sy, qx, qy = batch
        if self.running:  # running statistics: each input alone; nothing to choose, nothing updated
            self.algorithm.eval()
            try:
                _, task_losses, logits = self._losses(batch, steps)
            finally:
                self.algorithm.train()
        elif not transductive:
            task_losses, logits = _non_transductive.evaluate_tasks(self, batch, steps)
        elif self.spec.kind == "reptile":
            logits = []
            for task in range(len(sx)):
                learner = self._adapt(sx[task], sy[task], steps)
                with torch.no_grad():
                    logits.append(learner(qx[task]))
            logits = torch.stack(logits)
            task_losses = torch.stack([self.loss_fn(lg, y) for lg, y in zip(logits, qy)])
        else:
            _, task_losses, logits = self._losses(batch, steps)
        self.optimizer.zero_grad()  # evaluation built graphs but must not leave gradients behind
        accuracies = None
        if logits.ndim == qy.ndim + 1:
            accuracies = (logits.argmax(-1) == qy).float().mean(-1).detach().cpu().numpy()
        return task_losses.detach().cpu().numpy(), accuracies

    def set_meta_lr(self, meta_lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = meta_lr

    # -- public trees (backends/torch/_trees.py) -------------------------------------
    def _tree(self, named: dict[str, torch.Tensor]) -> dict[str, dict[str, np.ndarray]]:
        return torch_tree(self.algorithm, named)

    def _layout(self, tree: dict, layout: str | None) -> dict:
        return flax_tree(self.algorithm, self.spec, self.model, tree) if layout == "flax" else tree

    def meta_parameters(self, layout: str | None) -> dict:
        return self._layout(self._tree(dict(self.algorithm.named_parameters())), layout)

    def meta_gradients(self, batch, layout: str | None):
        self.algorithm.train()
        statistics = [buffer.clone() for buffer in self._buffers()]
        loss, _, _ = self._shared_backward(batch, self.adaptation_steps)  # all ranks' tasks
        named = {n: p.grad.clone() for n, p in self.algorithm.named_parameters() if p.grad is not None}
        self.optimizer.zero_grad()
        self._restore_buffers(statistics)  # a gradient, not a step: the statistics stay
        return loss.item(), self._layout(self._tree(named), layout)

    def adapted_parameters(self, support_x, support_y, steps: int, layout: str | None) -> list:
        adapted = []
        for task in range(support_x.shape[0]):
            learner = self._adapt(support_x[task], support_y[task], steps)
            named = {n: p for n, p in learner.named_parameters() if n.startswith("module.")}
            adapted.append(self._layout(self._tree(named), layout)["model"])
        return adapted

    # -- state -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {"algorithm": self.algorithm.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.carried:
            state["inner_state"] = tree_map(
                lambda leaf: leaf.detach().clone() if torch.is_tensor(leaf) else leaf, self.inner_state
            )
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Tensors may come on the CPU (copied to the learner's device); strict, so another
        model's state is refused by name."""
        if not isinstance(state, dict) or not {"algorithm", "optimizer"} <= set(state):
            raise ValueError("state must be a dict from MetaLearner.state_dict() (algorithm, optimizer)")
        check_inner_state_entry(state, self.carried)
        inner_state = self._restored_inner_state(state["inner_state"]) if self.carried else None
        self.algorithm.load_state_dict(state["algorithm"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.carried:
            self.inner_state = inner_state

    def _restored_inner_state(self, saved) -> Any:
        """``saved``'s tensors in the live inner state's structure (a checkpoint stores its
        NamedTuples as tuples), on its device and dtypes; another optimizer's state is refused."""
        leaves, live = tree_leaves(saved), tree_leaves(self.inner_state)
        shapes = [tuple(np.shape(leaf)) for leaf in leaves]
        if shapes != [tuple(np.shape(leaf)) for leaf in live]:
            raise ValueError(
                f"state['inner_state'] holds {len(leaves)} arrays of other shapes than this learner's "
                f"{len(live)}: a checkpoint of another model or inner optimizer?"
            )
        values = iter(leaves)

        def restore(reference):  # tensors onto the live state's device and dtype; other leaves as saved
            value = next(values)
            if not torch.is_tensor(reference):
                return value
            return torch.as_tensor(value).to(device=reference.device, dtype=reference.dtype)

        return tree_map(restore, self.inner_state)


def make_backend_step(spec: AlgorithmSpec, model: ModelSpec, ways: int, **options: Any) -> TorchStep:
    """The torch backend step of ``l2l_multi.MetaLearner``. Options besides the core's:
    ``device``, ``dtype`` ("float32"/"float64"), ``task_map`` ("auto", "vmap", "sequential"; the
    core maps the old ``path=`` to it), ``head``
    ("svm"/"ridge" for MetaOptNet), ``inner`` (names build ``l2l_multi.transforms``),
    ``batch_norm`` ("batch"/"running"; with "running" the core has given a model spec with
    running statistics: train steps update them, evaluation uses them)."""
    return TorchStep(spec, model, ways, **options)
