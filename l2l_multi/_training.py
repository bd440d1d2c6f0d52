"""One training loop for both backends: ``l2l.MetaLearner``.

``MetaLearner("maml", "omniglot-cnn", ways=5, ...)`` builds the model and the algorithm on the
current (or given) backend and exposes ``train_step`` / ``evaluate`` on stacked task batches
(``TaskDataset.sample_batch`` + ``partition_task_batch``), ``state_dict`` / ``load_state_dict``
for checkpoints, and ``meta_parameters`` (numpy, torch layout) for comparisons. An example
script switches backend with one argument and runs the same experiment.

Initial weights: the torch model is built after ``torch.manual_seed(seed)``; the jax backend
converts those same weights when torch is installed (``l2l_multi.interop``), so both backends
start identically, and otherwise initialises the flax twin from ``PRNGKey(seed)``.
"""

from __future__ import annotations

from typing import Any

from ._backend import _check_name, get_backend, load_backend
from ._checks import check_learning_rate

ALGORITHMS = ("maml", "metasgd", "anil", "protonet", "metaoptnet", "reptile")
# backend options with a fixed set of values (torch: dtype, path; jax: dtype, task_map)
OPTION_CHOICES = {
    "dtype": ("float32", "float64"),
    "path": ("auto", "loop", "vmap"),
    "task_map": ("auto", "vmap", "map"),
}
MODELS = ("omniglot-cnn", "omniglot-cnn-pool", "omniglot-fc", "cnn4", "cnn4-32")
# the ``inner=`` option: named inner optimizers, and the algorithms that have an inner optimizer
INNER_OPTIMIZERS = ("sgd", "momentum", "adam")
INNER_ALGORITHMS = ("maml", "metasgd", "anil")
INNER_MOMENTUM = 0.9


def check_inner_option(algorithm: str, inner: Any) -> None:
    """Refuse an ``inner=`` option that ``algorithm`` cannot use (a name or a transform)."""
    if inner is None:
        return
    if algorithm not in INNER_ALGORITHMS:
        raise ValueError(
            f"inner={inner!r:.60} applies to {', '.join(INNER_ALGORITHMS)}; algorithm={algorithm!r} has no "
            "inner optimizer"
        )
    if isinstance(inner, str):
        check_choice("inner", inner, INNER_OPTIMIZERS)
    elif not (callable(getattr(inner, "init", None)) and callable(getattr(inner, "update", None))):
        raise TypeError(
            f"inner={inner!r:.60} must be one of {', '.join(map(repr, INNER_OPTIMIZERS))} or a "
            "GradientTransformation (init, update)"
        )


def inner_optimizer(inner: Any, algorithm: str, lr: float, library: Any) -> Any:
    """The transform for ``MetaLearner(..., inner=...)``: ``None`` stays ``None`` (the algorithm's
    own step), a transform is used as given, a name of ``INNER_OPTIMIZERS`` is built by ``library``
    (``l2l_multi.transforms`` on torch, ``optax`` on jax: the same signatures): "sgd" is
    ``sgd(lr)``, "momentum" ``sgd(lr, momentum=0.9)``, "adam" ``adam(lr, eps_root=1e-16)``. For
    Meta-SGD the rate is 1.0: its learned rates (initialised to ``lr``) scale the updates."""
    check_inner_option(algorithm, inner)
    if not isinstance(inner, str):
        return inner
    from .transforms import DEFAULT_EPS_ROOT

    rate = 1.0 if algorithm == "metasgd" else lr
    if inner == "sgd":
        return library.sgd(rate)
    if inner == "momentum":
        return library.sgd(rate, momentum=INNER_MOMENTUM)
    return library.adam(rate, eps_root=DEFAULT_EPS_ROOT)


def check_choice(argument: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{argument}={value!r} is not one of {', '.join(repr(a) for a in allowed)}")
    return value


def MetaLearner(  # noqa: N802 - a factory that reads like the class it returns
    algorithm: str = "maml",
    model: str = "omniglot-cnn",
    ways: int = 5,
    *,
    lr: float = 0.4,
    meta_lr: float = 1e-3,
    adaptation_steps: int = 1,
    first_order: bool = False,
    seed: int = 0,
    backend: str | None = None,
    **options: Any,
):
    """A backend's meta-learner for ``algorithm`` on the named ``model``.

    Args:
        algorithm: one of ``ALGORITHMS`` ("maml", "metasgd", "anil", "protonet", "metaoptnet",
            "reptile").
        model: one of ``MODELS``: "omniglot-cnn" (1x28x28 inputs; MAML's strided convolutions),
            "omniglot-cnn-pool" (1x28x28; 3x3 convolutions with 2x2 max-pooling and a 64-d embedding,
            the ProtoNets / Matching Networks backbone), "omniglot-fc" (784),
            "cnn4" (3x84x84, mini-ImageNet), "cnn4-32" (3x32x32, CIFAR-FS and FC100); ``ways`` sets
            its output size.
        lr: inner-loop learning rate; meta_lr: Adam's learning rate for the meta-update (finite
            floats >= 0; others raise ``ValueError`` naming the argument).
        adaptation_steps: inner steps during training; first_order: MAML without second order.
        seed: initial weights (see the module docstring).
        backend: "torch" or "jax" (default: the current backend).
        options: backend options, e.g. ``device=`` (torch), ``head=`` (MetaOptNet),
            ``dtype="float64"``, ``path=`` (torch: "loop"/"vmap"/"auto"),
            ``task_map=`` (jax: "vmap"/"map"/"auto"), ``inner=`` (maml, metasgd, anil: the inner
            optimizer, "sgd", "momentum" or "adam" at rate ``lr`` (1.0 for metasgd, whose learned
            rates scale it), or a transform of the backend; default: the algorithm's SGD step).

    Returns:
        ``l2l_multi.backends.<backend>.training.MetaLearner`` with ``train_step(sx, sy, qx, qy)``
        and ``evaluate(sx, sy, qx, qy, adaptation_steps=None)`` returning dicts of floats
        (``loss``, ``accuracy``; ``train_step(..., wait=False)`` returns 0-d arrays instead, without
        waiting for an accelerator), plus ``state_dict``/``load_state_dict``.

        ``train_step`` never commits a non-finite update: if the meta-loss or a meta-gradient is
        NaN/inf, the meta-parameters and the optimizer state stay as they were and it raises
        ``FloatingPointError`` naming the iteration and what went non-finite (with ``wait=False``,
        at the next ``train_step``, ``evaluate``, ``state_dict``, ``meta_parameters`` or
        ``check_finite()`` call). ``iterations`` counts the committed updates (in ``state_dict``).
        Labels outside ``[0, ways)`` raise ``ValueError`` naming ``support_y``/``query_y``.

    Example:
        >>> import numpy as np
        >>> import l2l_multi as l2l
        >>> learner = l2l.MetaLearner("maml", "omniglot-fc", ways=3, backend="torch")
        >>> x = np.random.default_rng(0).random((2, 6, 784), dtype=np.float32)
        >>> y = np.tile(np.arange(3), (2, 2))
        >>> sorted(learner.train_step(x[:, :3], y[:, :3], x[:, 3:], y[:, 3:]))
        ['accuracy', 'loss']
    """
    check_choice("algorithm", algorithm, ALGORITHMS)
    check_choice("model", model, MODELS)
    if isinstance(ways, bool) or not isinstance(ways, int) or ways < 2:
        raise ValueError(f"ways={ways!r} must be an int >= 2")
    if isinstance(adaptation_steps, bool) or not isinstance(adaptation_steps, int) or adaptation_steps < 0:
        raise ValueError(f"adaptation_steps={adaptation_steps!r} must be a non-negative int")
    check_learning_rate(lr, "lr", arrays=())
    check_learning_rate(meta_lr, "meta_lr", arrays=())
    for option, allowed in OPTION_CHOICES.items():
        if option in options:
            check_choice(option, options[option], allowed)
    check_inner_option(algorithm, options.get("inner"))
    backend = get_backend() if backend is None else _check_name(backend, "backend")
    module = load_backend(backend)
    import importlib

    training = importlib.import_module(f"{module.__name__}.training")
    return training.MetaLearner(
        algorithm,
        model,
        ways,
        lr=lr,
        meta_lr=meta_lr,
        adaptation_steps=adaptation_steps,
        first_order=first_order,
        seed=seed,
        **options,
    )
