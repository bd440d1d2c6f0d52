"""One training loop for both backends: ``l2l.MetaLearner``.

``MetaLearner("maml", "omniglot-cnn", ways=5, ...)`` builds the model and the algorithm on the
current (or given) backend and exposes ``train_step`` / ``evaluate`` on stacked task batches
(``TaskDataset.sample_batch`` + ``partition_task_batch``), ``state_dict`` / ``load_state_dict``
for checkpoints, and ``meta_parameters`` for comparisons. An example script switches backend
with one argument and runs the same experiment.

The class is written once here: validation, the step counter, the host side of the non-finite
guard, evaluation's bookkeeping and the public trees. A backend supplies only a small "backend
step" object (``backends/<name>/training.py``: ``make_backend_step``) that converts a batch,
runs its compiled or autograd meta-step and evaluation, and holds its optimizer state.

Models and algorithms are named through ``l2l_multi._registry`` (``MODEL_SPECS``,
``ALGORITHM_SPECS``); a ``ModelSpec`` may also be given directly (e.g. the sine MLP with other
hidden widths).

Initial weights: the torch model is built after ``torch.manual_seed(seed)``; the jax backend
converts those same weights when torch is installed (through ``l2l_multi.interop``, so the jax
backend never imports the torch backend itself), so both backends start identically, and
otherwise initialises the flax twin from ``PRNGKey(seed)``.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._backend import _check_name, get_backend, load_backend
from ._checks import check_labels, check_learning_rate, nonfinite_inputs, nonfinite_update_error
from ._inner_batches import check_batch_order, check_batch_size
from ._learner_options import (
    BATCH_NAMES,
    BATCH_NORMS,
    LOSSES,
    OPTION_CHOICES,
    TASK_MAP_ALIASES,
    TASK_MAPS,
    check_choice,
    check_inner_option,
    check_steps,
    running_statistics_model,
)
from ._registry import ALGORITHM_SPECS, ModelSpec, algorithm_spec, model_spec


class _Pending:
    """A committed (or refused) step whose finite flag has not been read yet."""

    def __init__(self, iteration: int, outcome: Any, batch: tuple):
        self.iteration, self.outcome, self.batch = iteration, outcome, batch


class MetaLearner:
    """A meta-learner for ``algorithm`` on the named ``model``, on one backend.

    Args:
        algorithm: a name of ``l2l_multi._registry.ALGORITHM_SPECS`` ("maml", "metasgd", "anil",
            "protonet", "metaoptnet", "reptile", and whatever is registered later).
        model: a name of ``MODEL_SPECS``: "omniglot-cnn" (1x28x28 inputs; MAML's strided
            convolutions), "omniglot-cnn-pool" (1x28x28; 3x3 convolutions with 2x2 max-pooling
            and a 64-d embedding, the ProtoNets / Matching Networks backbone), "omniglot-fc"
            (784), "cnn4" (3x84x84, mini-ImageNet), "cnn4-32" (3x32x32, CIFAR-FS and FC100),
            "sine-mlp" (1 input, MAML's regression MLP), or a ``ModelSpec``; ``ways`` sets its
            output size (classes; with ``loss="mse"`` the number of regression outputs).
        lr: inner-loop learning rate; meta_lr: the meta-optimizer's learning rate (finite
            floats >= 0; others raise ``ValueError`` naming the argument).
        adaptation_steps: inner steps during training; first_order: MAML without second order.
        seed: initial weights (see the module docstring).
        loss: "cross-entropy" (labels are int classes in ``[0, ways)``; ``accuracy`` is
            reported) or "mse" (float targets ``[B, n, ways]``; no accuracy).
        backend: "torch" or "jax" (default: the current backend).
        options: backend options, e.g. ``device=`` (torch), ``head=`` (MetaOptNet),
            ``dtype="float64"``, ``task_map=`` (both: "auto", "vmap", "sequential"; the old
            spellings torch ``path="loop"``/``path="vmap"`` and jax ``task_map="map"`` are accepted),
            ``batch_norm=`` (both: "batch", the default, normalises every batch with its own
            statistics in training and evaluation; "running", for protonet and metaoptnet on the
            conv4 models, keeps running statistics as Snell et al.'s and Lee et al.'s code do:
            the conv blocks get torch's default BatchNorm2d (eps 1e-5, momentum 0.1),
            ``train_step`` normalises with batch statistics and updates the running mean and
            variance (each task's support set in order, then each task's query set), and
            ``evaluate`` normalises with the running ones, so each input's embedding depends on
            that input only; they are part of ``state_dict``), ``conv=`` (jax), ``inner=`` (maml,
            metasgd, anil, reptile: the inner optimizer, "sgd", "momentum" or "adam" at rate
            ``lr`` (1.0 for metasgd, whose learned rates scale it), or a transform of the
            backend or of ``l2l_multi.transforms`` (which serves both), e.g. Reptile's
            ``transforms.adam(1e-3, b1=0.0)``; default: the algorithm's SGD step),
            ``inner_batch=`` (reptile: samples per inner step, an int, each step taking the
            next ones in class-interleaved order; default None: the whole support set; at test
            time too), ``inner_order=`` (reptile: the order of those batches, "interleaved", the
            default, or "shuffled": Nichol et al.'s rule, every pass over the support set in a
            new random order seeded by the task's data, the same on both backends;
            ``l2l_multi._inner_batches``), ``inner_state=`` (reptile: "task", the default, starts the inner
            optimizer afresh for every task; "carried" keeps one inner-optimizer state, e.g.
            Adam's moments and step count, as Nichol et al.'s code does: ``train_step`` adapts
            the batch's tasks in order (``task_map="vmap"`` is refused), each starting from
            the state the previous one left, and keeps the last; ``evaluate`` starts every
            task from it and changes nothing; it is part of ``state_dict``),
            ``meta_optimizer=`` (both: "adam", the default, or
            "sgd": plain steps of ``meta_lr``, Reptile's ``theta <- theta + meta_lr *
            mean(phi - theta)``).

    ``train_step(sx, sy, qx, qy)`` and ``evaluate(sx, sy, qx, qy, adaptation_steps=None,
    transductive=True)`` take
    ``[B, s, ...]``/``[B, s]``/``[B, q, ...]``/``[B, q]`` batches (numpy or the backend's arrays)
    and return dicts of floats (``loss``, ``accuracy``; ``train_step(..., wait=False)`` returns
    0-d arrays instead, without waiting for an accelerator).

    ``train_step`` never commits a non-finite update: if the meta-loss or a meta-gradient is
    NaN/inf, the meta-parameters and the optimizer state stay as they were and it raises
    ``FloatingPointError`` naming the iteration and what went non-finite (with ``wait=False``, at
    the next ``train_step``, ``evaluate``, ``state_dict``, ``meta_parameters`` or
    ``check_finite()`` call). ``iterations`` counts the committed updates (in ``state_dict``).
    Labels outside ``[0, ways)`` raise ``ValueError`` naming ``support_y``/``query_y``.

    The backend's own objects stay reachable as attributes (read and write through): ``algorithm``,
    ``model``, ``optimizer`` (both), ``meta_params``/``opt_state`` (jax), ``device`` (torch).

    Example:
        >>> import numpy as np
        >>> import l2l_multi as l2l
        >>> learner = l2l.MetaLearner("maml", "omniglot-fc", ways=3, backend="torch")
        >>> x = np.random.default_rng(0).random((2, 6, 784), dtype=np.float32)
        >>> y = np.tile(np.arange(3), (2, 2))
        >>> sorted(learner.train_step(x[:, :3], y[:, :3], x[:, 3:], y[:, 3:]))
        ['accuracy', 'loss']
    """

    def __init__(
        self,
        algorithm: str = "maml",
        model: str | ModelSpec = "omniglot-cnn",
        ways: int = 5,
        *,
        lr: float = 0.4,
        meta_lr: float = 1e-3,
        adaptation_steps: int = 1,
        first_order: bool = False,
        seed: int = 0,
        loss: str = "cross-entropy",
        backend: str | None = None,
        **options: Any,
    ):
        spec = algorithm_spec(algorithm)
        model_spec_ = model_spec(model)
        check_choice("loss", loss, LOSSES)
        smallest = 2 if loss == "cross-entropy" else 1
        if isinstance(ways, bool) or not isinstance(ways, int) or ways < smallest:
            raise ValueError(f"ways={ways!r} must be an int >= {smallest}")
        check_steps(adaptation_steps)
        check_learning_rate(lr, "lr", arrays=())
        check_learning_rate(meta_lr, "meta_lr", arrays=())
        for option, allowed in OPTION_CHOICES.items():
            if option in options:
                check_choice(option, options[option], allowed)
        if "task_map" in options:
            value = options["task_map"]
            value = TASK_MAP_ALIASES.get(value, value) if isinstance(value, str) else value
            options["task_map"] = check_choice("task_map", value, TASK_MAPS)
        check_inner_option(algorithm, options.get("inner"))
        batch_norm = check_choice("batch_norm", options.get("batch_norm", "batch"), BATCH_NORMS)
        if batch_norm == "running":
            model_spec_ = running_statistics_model(algorithm, model_spec_)
        for option in ("head", "inner_batch", "inner_order", "inner_state"):  # some algorithms only
            if option in options and option not in spec.options:
                raise ValueError(f"{option}={options[option]!r} does not apply to algorithm={algorithm!r}")
        if "inner_batch" in options:
            options["inner_batch"] = check_batch_size(options["inner_batch"], "inner_batch")
        if "inner_order" in options:
            options["inner_order"] = check_batch_order(options["inner_order"], "inner_order")
        if loss != "cross-entropy" and spec.kind == "metric":
            raise ValueError(f"loss={loss!r}: {algorithm} classifies; only loss='cross-entropy' applies")
        self.backend = get_backend() if backend is None else _check_name(backend, "backend")
        if self.backend == "torch" and "path" in options:  # torch's old spelling, kept one release
            if "task_map" in options:
                raise ValueError(f"give task_map={options['task_map']!r} or its old spelling path=, not both")
            path = options.pop("path")
            options["task_map"] = TASK_MAP_ALIASES.get(path, path)
        if options.get("inner_state") == "carried" and options.get("task_map") == "vmap":
            raise ValueError(
                "task_map='vmap' with inner_state='carried': a carried state passes from task to task "
                "in order; use task_map='auto' or 'sequential'"
            )
        training = importlib.import_module(f"{load_backend(self.backend).__name__}.training")
        self.spec, self.model_spec = spec, model_spec_
        self.name, self.ways, self.adaptation_steps, self.loss = algorithm, ways, adaptation_steps, loss
        self.batch_norm = batch_norm
        self._impl = training.make_backend_step(
            spec,
            model_spec_,
            ways,
            lr=lr,
            meta_lr=meta_lr,
            adaptation_steps=adaptation_steps,
            first_order=first_order,
            seed=seed,
            loss=loss,
            **options,
        )
        self.iterations = 0  # committed meta-updates (a plain int, part of state_dict)
        self._pending: _Pending | None = None  # the last train_step(wait=False)'s check

    def __getattr__(self, name: str) -> Any:
        # the backend's own objects (algorithm, model, optimizer, meta_params, ...): read-through
        if name.startswith("__") or "_impl" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["_impl"], name)

    def __setattr__(self, name: str, value: Any) -> None:
        # write-through for the backend's own objects (e.g. ``learner.meta_params = ...``)
        impl = self.__dict__.get("_impl")
        if impl is not None and name not in self.__dict__ and hasattr(impl, name):
            setattr(impl, name, value)
        else:
            object.__setattr__(self, name, value)

    # -- checks ----------------------------------------------------------------------
    def _check_labels(self, support_y: Any, query_y: Any, classes: int) -> None:
        if self.loss == "cross-entropy":
            check_labels(support_y, "support_y", classes)
            check_labels(query_y, "query_y", classes)

    def check_finite(self) -> None:
        """Raise the ``FloatingPointError`` of a non-finite ``train_step(wait=False)``, whose update
        was skipped or undone (see ``train_step``); waits for that step. Called by
        ``train_step``, ``evaluate``, ``state_dict`` and ``meta_parameters``, so an error is never
        lost."""
        pending, self._pending = self._pending, None
        if pending is None or pending.outcome.finite():
            return
        pending.outcome.undo()
        self.iterations = pending.iteration - 1
        bad_inputs = nonfinite_inputs(zip(BATCH_NAMES, pending.batch))
        raise nonfinite_update_error(
            pending.iteration, float(pending.outcome.loss), pending.outcome.bad_names(), bad_inputs
        )

    # -- steps -----------------------------------------------------------------------
    def train_step(self, support_x, support_y, query_x, query_y, wait: bool = True) -> dict[str, Any]:
        """One meta-update on a batch ``[B, s, ...]``/``[B, s]``/``[B, q, ...]``/``[B, q]``.

        Returns ``loss`` and ``accuracy`` (cross-entropy only) as Python floats, or with
        ``wait=False`` as 0-d arrays of the backend, so an accelerator need not finish before the
        caller prepares the next batch (``float(value)`` reads them).

        Never commits a non-finite update: when the meta-loss or a meta-gradient is NaN/inf (or
        the inner loop refuses a non-finite support loss), the meta-parameters and Adam's state
        stay as they were, ``iterations`` does not advance, and ``FloatingPointError`` names the
        iteration and what went non-finite. With ``wait=False`` the flag is read later (torch
        undoes the update on the device by a select, jax's compiled step skips it): the error is
        raised by the next call of ``train_step``, ``evaluate``, ``state_dict``,
        ``meta_parameters`` or ``check_finite()``. Labels outside ``[0, ways)`` raise
        ``ValueError`` naming the argument."""
        self._check_labels(support_y, query_y, self.ways)
        batch = self._impl.convert(support_x, support_y, query_x, query_y)
        # the previous step's flag is read after the conversion, so the device waits only for launches
        self.check_finite()
        iteration = self.iterations + 1
        try:
            outcome = self._impl.step(batch, wait)
        except FloatingPointError as error:  # the inner loop refused a non-finite support loss
            bad_inputs = nonfinite_inputs(zip(BATCH_NAMES, batch))
            reason = str(error)
            raise nonfinite_update_error(iteration, float("nan"), [], bad_inputs, reason=reason) from error
        self.iterations, self._pending = iteration, _Pending(iteration, outcome, batch)
        metrics = {"loss": outcome.loss}
        if self.loss == "cross-entropy":
            metrics["accuracy"] = outcome.accuracy
        if wait or outcome.checked:  # checked: the backend already read the flag
            self.check_finite()
        if wait:
            return {key: float(value) for key, value in metrics.items()}
        return metrics

    def evaluate(
        self,
        support_x,
        support_y,
        query_x,
        query_y,
        adaptation_steps=None,
        ways=None,
        transductive: bool = True,
        inner_batch: int | None = None,
        inner_order: str | None = None,
    ) -> dict[str, Any]:
        """Adapt on each support set (``adaptation_steps``, default the training value), score the
        queries; returns ``loss`` (float), ``task_losses`` (numpy ``[B]``) and, for
        cross-entropy, ``accuracy`` and ``task_accuracies`` (numpy ``[B]``).

        Inputs: ``support_x [B, s, ...]``, ``support_y [B, s]``, ``query_x [B, q, ...]``,
        ``query_y [B, q]`` (float inputs; int labels for cross-entropy, float targets for mse),
        numpy or the backend's arrays. ``ways``: classes per task when it differs from training
        (metric learners only).

        ``transductive`` (bool): the protocol for models that normalise with batch statistics
        (Nichol, Achiam and Schulman 2018, Sec. 5). True (default, MAML's published protocol):
        a task's queries go through the model as one batch, so one query's prediction depends
        on the others. False: each query ``j`` is scored by a forward pass over ``[support ;
        query j]`` (its own row kept), so batch statistics come from the support set and that
        query only; adaptation is unchanged (support set only) and metric learners embed the
        support set alone for their head. Costs one forward pass of ``s + 1`` inputs per query
        (vectorised over the queries on both backends). A learner built with
        ``batch_norm="running"`` always normalises with its running statistics here (Snell et
        al.'s protocol): every input's embedding depends on that input only, so the flag changes
        nothing and is ignored (it must still be a bool); evaluation leaves the statistics as
        they are.

        ``inner_batch`` (reptile only): samples per inner step here instead of the learner's
        ``inner_batch=`` (an int; None: the learner's), e.g. Nichol et al.'s test-time batches
        of 5 after training on batches of 10. ``inner_order`` (reptile only): their order here
        ("interleaved" or "shuffled"; None: the learner's ``inner_order=``).

        Example:
            >>> import numpy as np
            >>> import l2l_multi as l2l
            >>> learner = l2l.MetaLearner("maml", "omniglot-fc", ways=3, backend="torch")
            >>> x = np.random.default_rng(0).random((2, 6, 784), dtype=np.float32)
            >>> y = np.tile(np.arange(3), (2, 2))
            >>> result = learner.evaluate(x[:, :3], y[:, :3], x[:, 3:], y[:, 3:], transductive=False)
            >>> result["task_losses"].shape, result["task_losses"].dtype
            ((2,), dtype('float32'))
        """
        if not isinstance(transductive, bool):
            raise TypeError(f"transductive={transductive!r} must be a bool (True or False)")
        steps = self.adaptation_steps if adaptation_steps is None else check_steps(adaptation_steps)
        ways = self.ways if ways is None else ways
        if ways != self.ways and not self.spec.flexible_ways:
            flexible = [name for name, spec in ALGORITHM_SPECS.items() if spec.flexible_ways]
            raise ValueError(
                f"ways={ways!r}: {self.name} has a {self.ways}-way output layer; only "
                f"{' and '.join(flexible)} evaluate with other ways"
            )
        if inner_batch is not None:
            if "inner_batch" not in self.spec.options:
                raise ValueError(f"inner_batch={inner_batch!r} does not apply to algorithm={self.name!r}")
            inner_batch = check_batch_size(inner_batch, "inner_batch")
        if inner_order is not None:
            if "inner_order" not in self.spec.options:
                raise ValueError(f"inner_order={inner_order!r} does not apply to algorithm={self.name!r}")
            inner_order = check_batch_order(inner_order, "inner_order")
        self.check_finite()
        self._check_labels(support_y, query_y, ways)
        batch = self._impl.convert(support_x, support_y, query_x, query_y)
        task_losses, accuracies = self._impl.evaluate(
            batch, steps, ways, transductive, inner_batch, inner_order
        )
        result: dict[str, Any] = {"loss": float(task_losses.mean()), "task_losses": task_losses}
        if accuracies is not None:
            result.update(accuracy=float(accuracies.mean()), task_accuracies=accuracies)
        return result

    def set_meta_lr(self, meta_lr: float) -> None:
        """Sets Adam's learning rate (for schedules); it is part of ``state_dict``."""
        check_learning_rate(meta_lr, "meta_lr", arrays=())
        self._impl.set_meta_lr(float(meta_lr))

    # -- public trees ----------------------------------------------------------------
    def meta_parameters(self, layout: str | None = None) -> dict:
        """Everything meta-learned as a tree of numpy arrays with the top-level keys of the
        contract ("model", "lrs", "features", "head", ...).

        ``layout``: ``None`` (the backend's own: torch ``{name: array}`` per key, jax flax
        trees), "flax" (both backends: the jax tree, torch converted by ``l2l_multi.interop``)
        or "torch" (torch only)."""
        self.check_finite()
        return self._impl.meta_parameters(_check_layout(layout))

    def meta_gradients(self, support_x, support_y, query_x, query_y, layout: str | None = None):
        """``(meta-loss float, gradient tree)`` of one meta-batch, without updating anything; the
        tree has ``meta_parameters(layout)``'s structure (for Reptile: its meta-update direction,
        ``meta - mean adapted``)."""
        self.check_finite()
        self._check_labels(support_y, query_y, self.ways)
        batch = self._impl.convert(support_x, support_y, query_x, query_y)
        loss, tree = self._impl.meta_gradients(batch, _check_layout(layout))
        return float(loss), tree

    def adapted_parameters(self, support_x, support_y, adaptation_steps=None, layout: str | None = None):
        """Each task's adapted parameters after ``adaptation_steps`` inner steps (default: the
        training value) on its support set ``[B, s, ...]``/``[B, s]``: a list of ``B`` trees with
        ``meta_parameters(layout)["model"]``'s structure (for ANIL: the adapted head). ``None``
        for algorithms without an inner loop."""
        steps = self.adaptation_steps if adaptation_steps is None else check_steps(adaptation_steps)
        self.check_finite()
        if not self.spec.adapts:
            return None
        if self.loss == "cross-entropy":
            check_labels(support_y, "support_y", self.ways)
        support_x, support_y = self._impl.convert(support_x, support_y, support_x, support_y)[:2]
        return self._impl.adapted_parameters(support_x, support_y, steps, _check_layout(layout))

    # -- state -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Meta-parameters and optimizer state (a checkpoint that resumes exactly), plus
        ``iterations``; the arrays are the backend's (torch: ``algorithm``/``optimizer`` state
        dicts; jax: ``meta_params``/``optimizer`` numpy trees)."""
        self.check_finite()  # a refused wait=False step raises here rather than being saved
        return {**self._impl.state_dict(), "iterations": self.iterations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores ``state_dict()``'s values; another model's or algorithm's state is refused by
        name. The structures come from this learner's live state, so a checkpoint that stored
        NamedTuples as plain tuples restores exactly."""
        self._impl.load_state_dict(state)
        self.iterations, self._pending = int(state.get("iterations", 0)), None


def _check_layout(layout: str | None) -> str | None:
    if layout is not None:
        check_choice("layout", layout, ("flax", "torch"))
    return layout
