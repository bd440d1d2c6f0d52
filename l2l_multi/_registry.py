"""Registries of the models and algorithms that ``l2l.MetaLearner`` and the cross-check know.

A ``ModelSpec`` names a model family (a class of the same name on each backend, or a builder the
backend registers for it) and its constructor arguments; an ``AlgorithmSpec`` says which options
an algorithm takes. The core holds the specs only: each backend's ``training`` module maps a
family to its own class and an algorithm name to its own builder, so adding an algorithm is one
``register_algorithm`` here plus one builder per backend, and no string switch grows anywhere.

This module imports no framework.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

__all__ = [
    "ALGORITHM_SPECS",
    "AlgorithmSpec",
    "MODEL_SPECS",
    "ModelSpec",
    "algorithm_spec",
    "model_spec",
    "register_algorithm",
    "register_model",
]


class ModelSpec(NamedTuple):
    """A named model: ``family(output_size=..., **arguments)`` on every backend.

    Attributes:
        name: the registry key, e.g. "omniglot-cnn".
        family: the class name in ``backends/<name>/vision/models.py`` (or a family a backend's
            ``training.MODEL_BUILDERS`` knows, e.g. "MLP").
        arguments: constructor keyword arguments besides ``output_size``.
        input_shape: one sample's shape in torch's layout, e.g. ``(1, 28, 28)`` or ``(784,)``.
        convolutional: whether the jax backend's ``conv=`` option (how convolutions run) applies.
        description: one line for documentation and errors.
    """

    name: str
    family: str
    arguments: Mapping[str, Any]
    input_shape: tuple[int, ...]
    convolutional: bool
    description: str

    def config(self, output_size: int) -> dict[str, Any]:
        """The constructor arguments for ``output_size`` outputs (classes, or 1 for regression)."""
        return {"output_size": output_size, **self.arguments}


class AlgorithmSpec(NamedTuple):
    """A named algorithm and the options that apply to it.

    Attributes:
        name: the registry key, e.g. "maml".
        kind: "gradient" (adapts the whole model), "head" (adapts the classifier on a fixed
            feature extractor: ANIL), "metric" (no inner loop: ProtoNet, MetaOptNet) or "reptile"
            (a first-order meta-update of its own).
        options: the keyword options of ``MetaLearner`` that apply, e.g. ``("inner",)``.
        crosscheck: the option sets ``python -m l2l_multi.crosscheck`` runs for it, e.g.
            ``({},)`` or ``({"head": "ridge"}, {"head": "svm"})``.
        description: one line for documentation.
    """

    name: str
    kind: str
    options: tuple[str, ...]
    crosscheck: tuple[Mapping[str, Any], ...]
    description: str

    @property
    def adapts(self) -> bool:
        """Whether it has an inner loop whose adapted parameters can be compared."""
        return self.kind in ("gradient", "head", "reptile")

    @property
    def flexible_ways(self) -> bool:
        """Whether it evaluates with another number of classes than it trained with."""
        return self.kind == "metric"


_MODELS: dict[str, ModelSpec] = {}
_ALGORITHMS: dict[str, AlgorithmSpec] = {}
MODEL_SPECS: Mapping[str, ModelSpec] = MappingProxyType(_MODELS)
ALGORITHM_SPECS: Mapping[str, AlgorithmSpec] = MappingProxyType(_ALGORITHMS)
KINDS = ("gradient", "head", "metric", "reptile")


def _choices(registry: Mapping) -> str:
    return ", ".join(repr(name) for name in registry)


def register_model(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add ``spec`` under ``spec.name``; an existing name is refused unless ``replace=True``."""
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"spec must be a ModelSpec, got {type(spec).__name__}")
    if spec.name in _MODELS and not replace:
        raise ValueError(f"model {spec.name!r} is already registered (pass replace=True to change it)")
    _MODELS[spec.name] = spec
    return spec


def register_algorithm(spec: AlgorithmSpec, *, replace: bool = False) -> AlgorithmSpec:
    """Add ``spec`` under ``spec.name``; each backend's ``training.ALGORITHM_BUILDERS`` must then
    have a builder of that name (a backend without one refuses it by name)."""
    if not isinstance(spec, AlgorithmSpec):
        raise TypeError(f"spec must be an AlgorithmSpec, got {type(spec).__name__}")
    if spec.kind not in KINDS:
        raise ValueError(f"spec.kind={spec.kind!r} is not one of {', '.join(map(repr, KINDS))}")
    if spec.name in _ALGORITHMS and not replace:
        raise ValueError(f"algorithm {spec.name!r} is already registered (pass replace=True to change it)")
    _ALGORITHMS[spec.name] = spec
    return spec


def model_spec(model: str | ModelSpec) -> ModelSpec:
    """The spec of a registered model name; a ``ModelSpec`` is returned as given (unregistered
    variants, e.g. another hidden width, need no registration)."""
    if isinstance(model, ModelSpec):
        return model
    if model not in _MODELS:
        raise ValueError(f"model={model!r} is not one of {_choices(_MODELS)}")
    return _MODELS[model]


def algorithm_spec(algorithm: str) -> AlgorithmSpec:
    """The spec of a registered algorithm name."""
    if algorithm not in _ALGORITHMS:
        raise ValueError(f"algorithm={algorithm!r} is not one of {_choices(_ALGORITHMS)}")
    return _ALGORITHMS[algorithm]


# -- the models ---------------------------------------------------------------------------------
register_model(
    ModelSpec(
        "omniglot-cnn",
        "OmniglotCNN",
        {},
        (1, 28, 28),
        True,
        "MAML's Omniglot conv4: strided 3x3 convolutions, 64 filters, spatial mean",
    )
)
# 28 -> 14 -> 7 -> 3 -> 1: a 64-d embedding
register_model(
    ModelSpec(
        "omniglot-cnn-pool",
        "CNN4",
        {"channels": 1, "embedding_size": 64},
        (1, 28, 28),
        True,
        "ProtoNets' Omniglot conv4: 3x3 convolutions and 2x2 max-pooling",
    )
)
register_model(
    ModelSpec(
        "omniglot-fc",
        "OmniglotFC",
        {"input_size": 784},
        (784,),
        False,
        "the fully connected Omniglot network (784-256-128-64-64)",
    )
)
register_model(ModelSpec("cnn4", "CNN4", {}, (3, 84, 84), True, "conv4 for mini-ImageNet (84x84)"))
# 32x32 inputs leave 2x2 maps after four poolings
register_model(
    ModelSpec(
        "cnn4-32",
        "CNN4",
        {"embedding_size": 4 * 64},
        (3, 32, 32),
        True,
        "conv4 for CIFAR-FS and FC100 (32x32)",
    )
)
register_model(
    ModelSpec(
        "sine-mlp",
        "MLP",
        {"input_size": 1, "sizes": (40, 40)},
        (1,),
        False,
        "MAML's sinusoid regression MLP (1-40-40-1, ReLU)",
    )
)

# -- the algorithms -----------------------------------------------------------------------------
_ONE = ({},)
register_algorithm(AlgorithmSpec("maml", "gradient", ("inner",), _ONE, "MAML (Finn et al. 2017)"))
register_algorithm(AlgorithmSpec("metasgd", "gradient", ("inner",), _ONE, "Meta-SGD (Li et al. 2017)"))
register_algorithm(AlgorithmSpec("anil", "head", ("inner",), _ONE, "ANIL (Raghu et al. 2020)"))
register_algorithm(AlgorithmSpec("protonet", "metric", (), _ONE, "ProtoNets (Snell et al. 2017)"))
register_algorithm(
    AlgorithmSpec(
        "metaoptnet",
        "metric",
        ("head",),
        ({"head": "ridge"}, {"head": "svm"}),
        "MetaOptNet (Lee et al. 2019)",
    )
)
# "inner_batch" / "inner_order" in options: the builders receive them (Reptile's inner
# minibatches and their order); "inner_state": the backend steps keep one inner-optimizer state
# across tasks when "carried" (cross-checked with momentum, whose carried velocity changes every
# task after the first)
register_algorithm(
    AlgorithmSpec(
        "reptile",
        "reptile",
        ("inner", "inner_batch", "inner_order", "inner_state"),
        (
            {},
            {"inner_batch": 2},
            {"inner_batch": 2, "inner_order": "shuffled"},
            {"inner": "momentum", "inner_state": "carried"},
        ),
        "Reptile (Nichol et al. 2018)",
    )
)
# "adaptation_steps" in options: the builders receive it (per-step rates and batch-norm rows)
register_algorithm(
    AlgorithmSpec(
        "mamlpp",
        "gradient",
        ("adaptation_steps",),
        _ONE,
        "MAML++ (Antoniou et al. 2019): per-step rates and batch norm",
    )
)
