"""The options of ``l2l.MetaLearner`` and their checks, shared by both backends' training steps:
the vocabularies (task maps, losses, inner optimizers, batch-norm modes), the refusals that name
the argument, and the builders that turn an option into a model spec or an inner transform."""

from __future__ import annotations

from typing import Any

from ._registry import ALGORITHM_SPECS, MODEL_SPECS, ModelSpec

# the names registered when this module was imported (the registries may grow later)
ALGORITHMS = tuple(ALGORITHM_SPECS)
MODELS = tuple(MODEL_SPECS)
# how tasks are mapped: one vocabulary on both backends (the contract's ``task_map``)
TASK_MAPS = ("auto", "vmap", "sequential")
TASK_MAP_ALIASES = {"map": "sequential", "loop": "sequential"}  # old spellings (jax, torch path=)
# backend options with a fixed set of values (``path`` is torch's old spelling of ``task_map``)
OPTION_CHOICES = {
    "dtype": ("float32", "float64"),
    "path": ("auto", "loop", "vmap"),
    "meta_optimizer": ("adam", "sgd"),  # the outer update (torch.optim / optax), at rate meta_lr
    # Reptile's inner-optimizer state: fresh for every task, or carried from task to task
    "inner_state": ("task", "carried"),
}
LOSSES = ("cross-entropy", "mse")
# the ``inner=`` option: named inner optimizers, and the algorithms that have an inner optimizer
INNER_OPTIMIZERS = ("sgd", "momentum", "adam")
INNER_ALGORITHMS = tuple(name for name, spec in ALGORITHM_SPECS.items() if "inner" in spec.options)
INNER_MOMENTUM = 0.9
BATCH_NAMES = ("support_x", "support_y", "query_x", "query_y")
# the ``batch_norm=`` option: "batch" normalises with the statistics of the batch scored, in
# training and evaluation (the models' "maml" layout); "running" keeps torch's running statistics
BATCH_NORMS = ("batch", "running")
# the model families whose conv blocks take ``layout="learn2learn"``: torch's default BatchNorm2d
RUNNING_STATISTICS_FAMILIES = ("OmniglotCNN", "CNN4")


def running_statistics_model(algorithm: str, spec: ModelSpec) -> ModelSpec:
    """``spec`` with running batch-norm statistics (``MetaLearner(..., batch_norm="running")``):
    its conv blocks get torch's default ``BatchNorm2d`` (eps 1e-5, momentum 0.1, running mean and
    unbiased variance tracked; the conv4 models' ``layout="learn2learn"``). Refuses algorithms that
    are not metric learners and models without such blocks, naming ``batch_norm``."""
    metric = [name for name, other in ALGORITHM_SPECS.items() if other.kind == "metric"]
    if algorithm not in metric:
        raise ValueError(
            f"batch_norm='running' applies to the metric learners ({', '.join(metric)}); "
            f"algorithm={algorithm!r} adapts with batch statistics, use batch_norm='batch'"
        )
    if spec.family not in RUNNING_STATISTICS_FAMILIES:
        models = [name for name, other in MODEL_SPECS.items() if other.family in RUNNING_STATISTICS_FAMILIES]
        raise ValueError(
            f"batch_norm='running' needs a conv4 model ({', '.join(models)}); model={spec.name!r} "
            f"(family {spec.family!r}) has no such batch norm"
        )
    return spec._replace(arguments={**spec.arguments, "layout": "learn2learn"})


def check_inner_option(algorithm: str, inner: Any) -> None:
    """Refuse an ``inner=`` option that ``algorithm`` cannot use (a name or a transform)."""
    if inner is None:
        return
    takes_inner = [name for name, spec in ALGORITHM_SPECS.items() if "inner" in spec.options]
    if algorithm not in takes_inner:
        raise ValueError(
            f"inner={inner!r:.60} applies to {', '.join(takes_inner)}; algorithm={algorithm!r} has no "
            "inner optimizer"
        )
    if isinstance(inner, str):
        check_choice("inner", inner, INNER_OPTIMIZERS)
    elif not (callable(getattr(inner, "init", None)) and callable(getattr(inner, "update", None))):
        raise TypeError(
            f"inner={inner!r:.60} must be one of {', '.join(map(repr, INNER_OPTIMIZERS))} or a "
            "GradientTransformation (init, update)"
        )


def inner_optimizer(inner: Any, algorithm: str, lr: float, library: Any, b1: float = 0.9) -> Any:
    """The transform for ``MetaLearner(..., inner=...)``: ``None`` stays ``None`` (the algorithm's
    own step), a transform is used as given, a name of ``INNER_OPTIMIZERS`` is built by ``library``
    (``l2l_multi.transforms`` on torch, ``optax`` on jax: the same signatures): "sgd" is
    ``sgd(lr)``, "momentum" ``sgd(lr, momentum=0.9)``, "adam" ``adam(lr, b1, eps_root=1e-16)``
    (``b1``: Adam's beta1; Reptile's paper uses 0). For Meta-SGD the rate is 1.0: its learned
    rates (initialised to ``lr``) scale the updates."""
    check_inner_option(algorithm, inner)
    if not isinstance(inner, str):
        return inner
    from .transforms import DEFAULT_EPS_ROOT

    rate = 1.0 if algorithm == "metasgd" else lr
    if inner == "sgd":
        return library.sgd(rate)
    if inner == "momentum":
        return library.sgd(rate, momentum=INNER_MOMENTUM)
    return library.adam(rate, b1=b1, eps_root=DEFAULT_EPS_ROOT)


def check_choice(argument: str, value: Any, allowed: tuple[str, ...]) -> str:
    """``value`` when it is one of ``allowed``; else ``ValueError`` naming ``argument`` and the choices."""
    if value not in allowed:
        raise ValueError(f"{argument}={value!r} is not one of {', '.join(repr(a) for a in allowed)}")
    return value


def check_steps(value: Any, argument: str = "adaptation_steps") -> int:
    """``value`` when it is a non-negative int (inner steps); else ``ValueError`` naming ``argument``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{argument}={value!r} must be a non-negative int")
    return value


def check_inner_state_entry(state: dict[str, Any], carried: bool) -> None:
    """Refuses a checkpoint whose ``inner_state`` entry does not match the learner's
    ``inner_state=`` option (a carried state dropped or invented would change the run)."""
    if carried and "inner_state" not in state:
        raise ValueError(
            "state has no 'inner_state': it comes from a learner with inner_state='task'; this one "
            "carries its inner-optimizer state (inner_state='carried')"
        )
    if not carried and "inner_state" in state:
        raise ValueError(
            "state holds an 'inner_state': it comes from a learner with inner_state='carried'; build "
            "this one with the same option"
        )
