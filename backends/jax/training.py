"""The jax backend step of ``l2l.MetaLearner``: a jit-compiled meta-step with optax Adam.

``l2l_multi._training.MetaLearner`` holds the shared logic (validation, the step counter, the host
side of the non-finite guard); this module supplies what only jax does. It never imports the
torch backend: initial weights shared with torch come through ``l2l_multi.interop``."""

from __future__ import annotations

import copy
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..._learner_options import check_inner_state_entry, inner_optimizer
from ..._registry import AlgorithmSpec, ModelSpec
from . import _non_transductive, _running_statistics, algorithms
from ._builders import ALGORITHM_BUILDERS as ALGORITHM_BUILDERS
from ._builders import MLP as MLP
from ._builders import MODEL_BUILDERS as MODEL_BUILDERS
from ._builders import build_model as build_model
from ._builders import build_variables as build_variables
from ._spread import GlobalMesh, joined_job


def _dotted(path) -> str:
    """``model.params.Dense_0.kernel`` for a pytree key path."""
    return ".".join(str(getattr(key, "key", getattr(key, "idx", getattr(key, "name", key)))) for key in path)


def _mse(prediction, target):
    return jnp.mean((prediction - target) ** 2)


LOSSES = {"cross-entropy": algorithms.cross_entropy, "mse": _mse}


def _meta_batch_loss(algorithm, meta_params, batch, loss, steps, task_map):
    """``(loss, task_losses, query_logits)`` through the contract's ``meta_batch_loss``."""
    result = algorithms.meta_batch_loss(
        algorithm, meta_params, *batch, loss=loss, steps=steps, task_map=task_map
    )
    return result.loss, result.task_losses, result.query_logits


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


def _numpy(tree):
    return GlobalMesh.host(tree)  # np.asarray, gathering arrays other processes hold parts of


class _Outcome:
    """One compiled step as the core's guard sees it (the step itself skipped a non-finite update)."""

    checked = False

    def __init__(self, metrics):
        self.metrics, self.loss, self.accuracy = metrics, metrics.loss, metrics.accuracy

    def finite(self) -> bool:
        return bool(self.metrics.is_finite)

    def bad_names(self) -> list[str]:
        flags, _ = jax.tree_util.tree_flatten_with_path(jax.device_get(self.metrics.gradients_finite))
        return [_dotted(path) for path, finite in flags if not finite]

    def undo(self) -> None:
        """Nothing to undo: ``make_meta_train_step(skip_nonfinite=True)`` kept the old state."""


class JaxStep:
    """The jax half of ``MetaLearner``: see ``make_backend_step``."""

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
        dtype="float32",
        task_map="auto",
        head=None,
        conv="auto",
        inner=None,
        batch_norm="batch",
        inner_batch=None,
        inner_order=None,
        meta_optimizer="adam",
        inner_state="task",
    ):
        if spec.name not in ALGORITHM_BUILDERS:
            raise ValueError(f"algorithm={spec.name!r} has no jax builder (ALGORITHM_BUILDERS)")
        self.spec, self.ways, self.task_map, self.lr = spec, ways, task_map, lr
        self.adaptation_steps, self.loss_fn = adaptation_steps, LOSSES[loss]
        self.dtype = {"float32": jnp.float32, "float64": jnp.float64}[dtype]
        self.model, variables = build_variables(model, ways, seed, self.dtype, conv)
        inner = inner_optimizer(inner, spec.name, lr, optax)  # a name -> optax's own implementation
        sized = {"adaptation_steps": adaptation_steps} if "adaptation_steps" in spec.options else {}
        if inner_batch is not None:  # the core allowed it for the algorithms that take it
            sized["inner_batch"] = inner_batch
        if inner_order is not None:
            sized["inner_order"] = inner_order
        self.algorithm, self.meta_params = ALGORITHM_BUILDERS[spec.name](
            self.model, variables, ways, lr=lr, first_order=first_order, inner=inner, head=head, **sized
        )
        # batch_norm="running" (the core built the model with torch's default BatchNorm2d): the
        # running statistics are kept beside the meta-parameters (``_running_statistics``)
        self.running, self.batch_stats = batch_norm == "running", None
        if self.running:
            features = dict(self.meta_params["features"])
            self.batch_stats = features.pop("batch_stats")
            self.meta_params = {**self.meta_params, "features": features}
        # the learning rate lives in the optimizer state, so schedules and checkpoints carry it
        meta_class = {"adam": optax.adam, "sgd": optax.sgd}[meta_optimizer]
        self.optimizer = optax.inject_hyperparams(meta_class)(learning_rate=meta_lr)
        self.opt_state = self.optimizer.init(self.meta_params)
        # inner_state="carried" (Reptile): one inner-optimizer state threaded through the tasks of
        # every train step in order; evaluation starts each task from it (``_algorithm_params``)
        self.carried, self.inner_state = inner_state == "carried", None
        if self.carried:
            self.inner_state = self.algorithm.inner_transform().init(self.meta_params["model"]["params"])
            self._step = algorithms.make_carried_train_step(
                self.algorithm, self.optimizer, self.loss_fn, adaptation_steps, skip_nonfinite=True
            )
        elif self.running:
            self._step = _running_statistics.make_train_step(
                self.algorithm, self.model, self.optimizer, self.loss_fn
            )
        else:
            self._step = algorithms.make_meta_train_step(
                self.algorithm,
                self.optimizer,
                loss=self.loss_fn,
                adaptation_steps=adaptation_steps,
                task_map=task_map,
                skip_nonfinite=True,
            )
        self._evaluators: dict[tuple, Any] = {}
        # several devices (processes or GPUs): the state replicated, batches sharded, on one mesh
        self.spread = GlobalMesh() if joined_job() else None
        if self.running and self.spread is not None:
            raise ValueError(
                "batch_norm='running' runs on one device and process: the running statistics are "
                "updated task after task"
            )
        if self.carried and self.spread is not None:
            raise ValueError(
                "inner_state='carried' runs on one device and process: the state passes from task to "
                "task in order"
            )
        if self.spread is not None:
            self.meta_params, self.opt_state = self.spread.replicate((self.meta_params, self.opt_state))

    def convert(self, *arrays) -> tuple:
        out = []
        for array in arrays:
            array = jnp.asarray(array)
            out.append(array.astype(self.dtype) if jnp.issubdtype(array.dtype, jnp.floating) else array)
        return tuple(out)

    def step(self, batch, wait: bool) -> _Outcome:
        """One compiled meta-update (traced once per batch shape)."""
        step = self._step
        if self.carried:
            self.meta_params, self.opt_state, self.inner_state, metrics = step(
                self.meta_params, self.opt_state, self.inner_state, *batch
            )
            return _Outcome(metrics)
        if self.running:
            self.meta_params, self.opt_state, self.batch_stats, metrics = step(
                self.meta_params, self.opt_state, self.batch_stats, *batch
            )
            return _Outcome(metrics)
        if self.spread is not None:  # MetaLearner checked the host batch; the compiled step gets it sharded
            batch, _ = self.spread.shard(batch)
            step = step.jitted
        self.meta_params, self.opt_state, metrics = step(self.meta_params, self.opt_state, *batch)
        return _Outcome(metrics)

    def set_meta_lr(self, meta_lr: float) -> None:
        current = self.opt_state.hyperparams["learning_rate"]
        self.opt_state.hyperparams["learning_rate"] = jnp.asarray(meta_lr, current.dtype)
        if self.spread is not None:
            self.opt_state = self.spread.replicate(_numpy(self.opt_state))

    def _algorithm_params(self):
        """The meta-parameters as the algorithm's functions take them: with the carried inner
        state (``meta_params["inner_state"]``, where each adaptation starts) when there is one."""
        if self.carried:
            return {**self.meta_params, "inner_state": self.inner_state}
        return self.meta_params

    def _evaluation_algorithm(self, ways: int, inner_batch=None, inner_order=None):
        algorithm = self.algorithm
        if ways != self.ways:  # a metric head's logits have a static number of classes
            algorithm = copy.copy(algorithm)
            algorithm.ways = ways
        if inner_batch is not None:  # Reptile's inner minibatches for this evaluation
            algorithm = copy.copy(algorithm)
            algorithm.batch_size = inner_batch
        if inner_order is not None:  # and their order
            algorithm = copy.copy(algorithm)
            algorithm.batch_order = inner_order
        return algorithm

    def evaluate(
        self, batch, steps: int, ways: int, transductive: bool = True, inner_batch=None, inner_order=None
    ):
        """``(task losses [B], task accuracies [B] or None)`` as numpy; ``transductive=False``
        scores each query on the batch ``[support ; query]`` (``_non_transductive``);
        ``inner_batch`` / ``inner_order``: Reptile's samples per inner step and their order for
        this call (None: its own). One compiled evaluator per ``(steps, ways, transductive,
        inner_batch, inner_order)``."""
        if self.running:  # every input normalised alone: the flag changes nothing
            transductive = True
        key = (steps, ways, transductive, inner_batch, inner_order)
        if key not in self._evaluators:
            algorithm = self._evaluation_algorithm(ways, inner_batch, inner_order)

            def evaluate(meta_params, batch_stats, sx, sy, qx, qy):
                if self.running:
                    task_losses, logits = _running_statistics.evaluate_tasks(
                        algorithm,
                        self.model,
                        meta_params,
                        batch_stats,
                        (sx, sy, qx, qy),
                        self.loss_fn,
                        self.task_map,
                    )
                elif transductive:
                    _, task_losses, logits = _meta_batch_loss(
                        algorithm, meta_params, (sx, sy, qx, qy), self.loss_fn, steps, self.task_map
                    )
                else:
                    task_losses, logits = _non_transductive.evaluate_tasks(
                        algorithm, meta_params, (sx, sy, qx, qy), self.loss_fn, steps
                    )
                if logits.ndim != qy.ndim + 1:  # regression
                    return task_losses, None
                return task_losses, (logits.argmax(-1) == qy).mean(-1)

            self._evaluators[key] = jax.jit(evaluate)
        count = len(batch[0])
        if self.spread is not None:  # padded to the devices; the copies of the last task are cut
            batch, count = self.spread.shard(batch, pad=True)
        evaluator = self._evaluators[key]
        task_losses, accuracies = _numpy(evaluator(self._algorithm_params(), self.batch_stats, *batch))
        return task_losses[:count], None if accuracies is None else accuracies[:count]

    # -- public trees ----------------------------------------------------------------
    @staticmethod
    def _layout(tree, layout: str | None):
        if layout == "torch":
            raise ValueError(
                "layout='torch' is not available on the jax backend; convert the model's variables "
                "with l2l_multi.interop.flax_to_torch"
            )
        return _numpy(tree)

    def meta_parameters(self, layout: str | None) -> dict:
        return self._layout(self.meta_params, layout)

    def meta_gradients(self, batch, layout: str | None):
        algorithm, steps = self.algorithm, self.adaptation_steps
        if self.spread is not None:
            batch, _ = self.spread.shard(batch)

        stats = self.batch_stats

        def loss_of(meta):
            if stats is not None:  # train mode reads no running statistic and this updates none
                meta = _running_statistics.with_statistics(meta, stats)
            return _meta_batch_loss(algorithm, meta, batch, self.loss_fn, steps, self.task_map)[0]

        if self.carried:  # the step's direction, its inner state not kept

            def carried(meta, inner_state):
                grads, result, _ = algorithms.carried_gradients(
                    algorithm, meta, inner_state, batch, self.loss_fn, steps
                )
                return result.loss, grads

            loss, grads = jax.jit(carried)(self.meta_params, self.inner_state)
        elif self.spec.kind == "reptile":

            def reptile(meta):
                direction = jax.vmap(lambda x, y: algorithm.meta_gradient(meta, x, y, steps=steps))
                grads = jax.tree_util.tree_map(lambda d: d.mean(0), direction(batch[0], batch[1]))
                return loss_of(meta), grads

            loss, grads = jax.jit(reptile)(self.meta_params)
        else:
            loss, grads = jax.jit(jax.value_and_grad(loss_of))(self.meta_params)
        return float(loss), self._layout(grads, layout)

    def adapted_parameters(self, support_x, support_y, steps: int, layout: str | None) -> list:
        algorithm, loss = self.algorithm, self.loss_fn
        meta, count = jax.lax.stop_gradient(self._algorithm_params()), len(support_x)
        if self.spread is not None:
            (support_x, support_y), _ = self.spread.shard((support_x, support_y), pad=True)
        adapted = jax.jit(jax.vmap(lambda x, y: algorithm.adapt(meta, x, y, loss=loss, steps=steps)))(
            support_x, support_y
        )
        adapted = self._layout(adapted, layout)
        return [jax.tree_util.tree_map(lambda a, t=task: a[t], adapted) for task in range(count)]

    # -- state -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {"meta_params": _numpy(self.meta_params), "optimizer": _numpy(self.opt_state)}
        if self.running:
            state["batch_stats"] = _numpy(self.batch_stats)
        if self.carried:
            state["inner_state"] = _numpy(self.inner_state)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The tree structures (flax dicts, optax NamedTuples) come from this learner's live
        state; the arrays must match in number, shape and dtype."""
        if not isinstance(state, dict) or not {"meta_params", "optimizer"} <= set(state):
            raise ValueError("state must be a dict from MetaLearner.state_dict() (meta_params, optimizer)")
        if self.running and "batch_stats" not in state:
            raise ValueError(
                "state has no 'batch_stats': it comes from a learner with batch_norm='batch', this "
                "one keeps running statistics (batch_norm='running')"
            )
        check_inner_state_entry(state, self.carried)
        meta_params = _restore_like(self.meta_params, state["meta_params"], "meta_params")
        opt_state = _restore_like(self.opt_state, state["optimizer"], "optimizer")
        if self.running:
            self.batch_stats = _restore_like(self.batch_stats, state["batch_stats"], "batch_stats")
        if self.carried:
            self.inner_state = _restore_like(self.inner_state, state["inner_state"], "inner_state")
        self.meta_params, self.opt_state = meta_params, opt_state
        if self.spread is not None:
            self.meta_params, self.opt_state = self.spread.replicate((self.meta_params, self.opt_state))


def make_backend_step(spec: AlgorithmSpec, model: ModelSpec, ways: int, **options: Any) -> JaxStep:
    """The jax backend step of ``l2l_multi.MetaLearner``. Options besides the core's: ``dtype``
    ("float32"/"float64", the latter needs ``jax_enable_x64``), ``task_map`` ("auto", "vmap",
    "sequential"), ``head`` ("ridge"), ``conv`` ("auto", "xla", "matmul": how the model's convolutions
    run; "xla" compiles several times faster on CPU, "matmul" runs faster there), ``inner``
    (names build optax's transforms), ``batch_norm`` ("batch"/"running"; with "running" the core
    has given a model spec with running statistics, kept in ``batch_stats`` and the state dict)."""
    return JaxStep(spec, model, ways, **options)
