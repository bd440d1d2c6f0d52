"""The jax side of ``l2l.MetaLearner``: a jit-compiled meta-step with optax Adam."""

from __future__ import annotations

import copy
import importlib.util
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..._checks import check_labels, check_learning_rate, nonfinite_inputs, nonfinite_update_error
from ..._training import inner_optimizer
from . import algorithms
from .vision import models

_FLAX_MODELS = {
    "omniglot-cnn": lambda ways, conv: models.OmniglotCNN(ways, implementation=conv),
    "omniglot-cnn-pool": lambda ways, conv: models.CNN4(
        ways, channels=1, embedding_size=64, implementation=conv
    ),
    "omniglot-fc": lambda ways, conv: models.OmniglotFC(28 * 28, ways),
    "cnn4": lambda ways, conv: models.CNN4(ways, implementation=conv),
    "cnn4-32": lambda ways, conv: models.CNN4(ways, embedding_size=4 * 64, implementation=conv),
}
_INPUT_SHAPES = {
    "omniglot-cnn": (2, 1, 28, 28),
    "omniglot-cnn-pool": (2, 1, 28, 28),
    "omniglot-fc": (2, 784),
    "cnn4": (2, 3, 84, 84),
    "cnn4-32": (2, 3, 32, 32),
}


def build_variables(name: str, ways: int, seed: int, dtype=jnp.float32, conv: str = "auto"):
    """``(flax model, variables)`` for a named model: torch's seeded weights converted when torch
    is installed (identical start on both backends), else ``model.init(PRNGKey(seed), ...)``.
    ``conv``: how its convolutions run ("auto", "xla", "matmul"; see ``vision.models.Conv2d``)."""
    model = _FLAX_MODELS[name](ways, conv)
    if importlib.util.find_spec("torch") is not None:
        from ... import interop
        from ..torch.training import build_model

        variables = interop.torch_to_flax(build_model(name, ways, seed), model)
    else:
        variables = model.init(jax.random.PRNGKey(seed), jnp.zeros(_INPUT_SHAPES[name], jnp.float32))
    variables = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), dict(variables))
    return model, variables


def _dotted(path) -> str:
    """``model.params.Dense_0.kernel`` for a pytree key path."""
    return ".".join(str(getattr(key, "key", getattr(key, "idx", getattr(key, "name", key)))) for key in path)


def _split(model, variables):
    """Feature function and head for ANIL / ProtoNet: ``embed`` and the ``classifier`` Dense."""
    params = variables["params"]
    if "classifier" not in params or not hasattr(model, "embed"):
        raise ValueError(f"{type(model).__name__} has no embed/classifier split for this algorithm")

    def features(feature_variables, x, train=True):
        full = {**feature_variables, "params": {**feature_variables["params"]}}
        if "batch_stats" in full and train:
            return model.apply(full, x, train, method="embed", mutable=["batch_stats"])[0]
        return model.apply(full, x, train, method="embed")

    feature_variables = {**variables, "params": {k: v for k, v in params.items() if k != "classifier"}}
    head_variables = {"params": params["classifier"]}
    return features, feature_variables, head_variables


def _restore_like(live, saved, name: str):
    """``saved``'s leaves in ``live``'s tree structure, as jax arrays; refuses another model's state."""
    leaves, live_leaves = jax.tree_util.tree_leaves(saved), jax.tree_util.tree_leaves(live)
    if len(leaves) != len(live_leaves):
        raise ValueError(
            f"state[{name!r}] holds {len(leaves)} arrays, this learner's {name} has {len(live_leaves)}: "
            "a checkpoint of another model or algorithm?"
        )
    for index, (value, reference) in enumerate(zip(leaves, live_leaves)):
        value = np.asarray(value)
        if value.shape != reference.shape or value.dtype != reference.dtype:
            raise ValueError(
                f"state[{name!r}] array {index} is {value.dtype}{list(value.shape)}, this learner's is "
                f"{reference.dtype}{list(reference.shape)}: a checkpoint of another model or algorithm?"
            )
    structure = jax.tree_util.tree_structure(live)
    return jax.tree_util.tree_unflatten(structure, [jnp.asarray(leaf) for leaf in leaves])


class MetaLearner:
    """See ``l2l_multi.MetaLearner``. Extra options: ``dtype`` ("float32"/"float64", the latter
    needs ``jax_enable_x64``), ``task_map`` ("auto", "vmap", "map"), ``head`` ("ridge"), ``conv``
    ("auto", "xla", "matmul": how the model's convolutions run; "xla" compiles several times faster
    on CPU, "matmul" runs faster there), ``inner`` (see ``l2l_multi.MetaLearner``; names build
    optax's transforms)."""

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
        dtype="float32",
        task_map="auto",
        head="ridge",
        conv="auto",
        inner=None,
    ):
        import flax.linen as nn

        self.name, self.ways, self.adaptation_steps, self.task_map = (
            algorithm,
            ways,
            adaptation_steps,
            task_map,
        )
        self.dtype = {"float32": jnp.float32, "float64": jnp.float64}[dtype]
        self.model, variables = build_variables(model, ways, seed, self.dtype, conv)
        inner = inner_optimizer(inner, algorithm, lr, optax)  # a name -> optax's own implementation
        step = {"lr": lr} if inner is None else {"inner": inner}
        if algorithm in ("maml", "metasgd", "reptile"):
            if algorithm == "reptile":
                self.algorithm = algorithms.Reptile(self.model, lr)
            elif algorithm == "metasgd":
                self.algorithm = algorithms.MetaSGD(self.model, lr, first_order=first_order, inner=inner)
            else:
                self.algorithm = algorithms.MAML(self.model, first_order=first_order, **step)
            self.meta_params = self.algorithm.from_variables(variables)
        else:
            features, feature_variables, head_variables = _split(self.model, variables)
            if algorithm == "anil":
                self.algorithm = algorithms.ANIL(features, nn.Dense(ways), first_order=first_order, **step)
                self.meta_params = self.algorithm.from_variables(feature_variables, head_variables)
            elif algorithm == "protonet":
                self.algorithm = algorithms.ProtoNet(features, ways)
                self.meta_params = self.algorithm.from_variables(feature_variables)
            else:
                self.algorithm = algorithms.MetaOptNet(features, ways, head=head)
                self.meta_params = self.algorithm.from_variables(feature_variables)
        # the learning rate lives in the optimizer state, so schedules and checkpoints carry it
        self.optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=meta_lr)
        self.opt_state = self.optimizer.init(self.meta_params)
        self._step = algorithms.make_meta_train_step(
            self.algorithm,
            self.optimizer,
            adaptation_steps=adaptation_steps,
            task_map=task_map,
            skip_nonfinite=True,
        )
        self.iterations = 0  # committed meta-updates (a plain int, part of state_dict)
        self._pending = None  # the last train_step's (iteration, metrics, batch), until checked
        self._evaluators: dict[int, Any] = {}

    def _arrays(self, *arrays):
        out = []
        for array in arrays:
            array = jnp.asarray(array)
            out.append(array.astype(self.dtype) if jnp.issubdtype(array.dtype, jnp.floating) else array)
        return out

    def train_step(self, support_x, support_y, query_x, query_y, wait: bool = True) -> dict[str, Any]:
        """One compiled meta-update (traced once per batch shape).

        Returns ``loss`` and ``accuracy`` as Python floats, or with ``wait=False`` as 0-d jax arrays
        without waiting for the device, so the host can prepare the next batch meanwhile
        (``float(value)`` reads them).

        Never commits a non-finite update: the compiled step (``make_meta_train_step(...,
        skip_nonfinite=True)``) keeps the meta-parameters and optimizer state (Adam's moments and
        count) when the meta-loss or a meta-gradient is NaN/inf, ``iterations`` does not advance,
        and ``FloatingPointError`` names the iteration and what went non-finite. With
        ``wait=False`` the flag is read later: the error is raised by the next call of
        ``train_step``, ``evaluate``, ``state_dict``, ``meta_parameters`` or ``check_finite()``.
        Labels outside ``[0, ways)`` raise ``ValueError`` naming the argument (they are read on
        the host; a negative one would otherwise give a finite, wrong loss)."""
        check_labels(support_y, "support_y", self.ways)
        check_labels(query_y, "query_y", self.ways)
        batch = self._arrays(support_x, support_y, query_x, query_y)
        # the previous step's flag is read last, so the device waits only for this dispatch
        self.check_finite()
        iteration = self.iterations + 1
        self.meta_params, self.opt_state, metrics = self._step(self.meta_params, self.opt_state, *batch)
        self.iterations, self._pending = iteration, (iteration, metrics, batch)
        if wait:
            self.check_finite()
            loss, accuracy = jax.device_get((metrics.loss, metrics.accuracy))
            return {"loss": float(loss), "accuracy": float(accuracy)}
        return {"loss": metrics.loss, "accuracy": metrics.accuracy}

    def check_finite(self) -> None:
        """Raise the ``FloatingPointError`` of a non-finite ``train_step(wait=False)``, whose update
        the compiled step skipped (see ``train_step``); waits for that step. Called by
        ``train_step``, ``evaluate``, ``state_dict`` and ``meta_parameters``, so an error is never
        lost."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        iteration, metrics, batch = pending
        if bool(metrics.is_finite):
            return
        self.iterations = iteration - 1
        flags, _ = jax.tree_util.tree_flatten_with_path(jax.device_get(metrics.gradients_finite))
        bad = [_dotted(path) for path, finite in flags if not finite]
        bad_inputs = nonfinite_inputs(zip(("support_x", "support_y", "query_x", "query_y"), batch))
        raise nonfinite_update_error(iteration, float(metrics.loss), bad, bad_inputs)

    def set_meta_lr(self, meta_lr: float) -> None:
        """Sets Adam's learning rate (for schedules); it is part of ``state_dict``."""
        check_learning_rate(meta_lr, "meta_lr", arrays=())
        current = self.opt_state.hyperparams["learning_rate"]
        self.opt_state.hyperparams["learning_rate"] = jnp.asarray(meta_lr, current.dtype)

    def evaluate(
        self, support_x, support_y, query_x, query_y, adaptation_steps=None, ways=None
    ) -> dict[str, Any]:
        """Adapt and score each task; ``loss``, ``accuracy``, ``task_accuracies`` (numpy ``[B]``).

        ``ways``: classes per task when it differs from training (ProtoNet, MetaOptNet only)."""
        steps = self.adaptation_steps if adaptation_steps is None else adaptation_steps
        ways = self.ways if ways is None else ways
        if ways != self.ways and self.name not in ("protonet", "metaoptnet"):
            raise ValueError(
                f"ways={ways!r}: {self.name} has a {self.ways}-way output layer; only protonet and "
                "metaoptnet evaluate with other ways"
            )
        self.check_finite()
        check_labels(support_y, "support_y", ways)
        check_labels(query_y, "query_y", ways)
        if (steps, ways) not in self._evaluators:
            self._evaluators[steps, ways] = jax.jit(self._evaluate_fn(steps, ways))
        loss, accuracies = self._evaluators[steps, ways](
            self.meta_params, *self._arrays(support_x, support_y, query_x, query_y)
        )
        accuracies = np.asarray(accuracies)
        return {"loss": float(loss), "accuracy": float(accuracies.mean()), "task_accuracies": accuracies}

    def _evaluate_fn(self, steps, ways):
        algorithm = self.algorithm
        if isinstance(algorithm, algorithms.Reptile):  # Reptile adapts like MAML at test time
            algorithm = algorithms.MAML(self.model, algorithm.lr, first_order=True)
        elif ways != self.ways:  # a metric head's logits have a static number of classes
            algorithm = copy.copy(algorithm)
            algorithm.ways = ways

        def evaluate(meta_params, sx, sy, qx, qy):
            _, (task_losses, logits) = algorithms.meta_batch_loss(
                algorithm, meta_params, sx, sy, qx, qy, adaptation_steps=steps, task_map=self.task_map
            )
            return task_losses.mean(), (logits.argmax(-1) == qy).mean(-1)

        return evaluate

    def meta_parameters(self) -> dict:
        """The meta-parameter tree as numpy arrays (jax layout)."""
        self.check_finite()
        return jax.tree_util.tree_map(np.asarray, self.meta_params)

    def state_dict(self) -> dict[str, Any]:
        """Meta-parameters and optimizer state as numpy trees (a checkpoint that resumes exactly)."""
        self.check_finite()  # a refused wait=False step raises here rather than being saved
        to_numpy = lambda tree: jax.tree_util.tree_map(np.asarray, tree)
        return {
            "meta_params": to_numpy(self.meta_params),
            "optimizer": to_numpy(self.opt_state),
            "iterations": self.iterations,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores ``state_dict()``'s values. The tree structures (flax dicts, optax NamedTuples)
        come from this learner's own live state, so a checkpoint that stored NamedTuples as plain
        tuples restores exactly; the arrays must match in number, shape and dtype."""
        if not isinstance(state, dict) or not {"meta_params", "optimizer"} <= set(state):
            raise ValueError("state must be a dict from MetaLearner.state_dict() (meta_params, optimizer)")
        self.meta_params = _restore_like(self.meta_params, state["meta_params"], "meta_params")
        self.opt_state = _restore_like(self.opt_state, state["optimizer"], "optimizer")
        self.iterations, self._pending = int(state.get("iterations", 0)), None
