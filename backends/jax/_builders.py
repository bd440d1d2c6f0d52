"""The jax backend's registry builders: flax models of the registry's model specs and the
algorithms ``l2l.MetaLearner`` trains (``(flax model, variables, ways, **options) -> (algorithm,
meta_params)``). ``training`` re-exports them; helpers register more in these dicts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ..._registry import ModelSpec, model_spec
from . import algorithms
from .vision import models


class MLP(nn.Module):
    """``[Dense -> ReLU] * len(sizes) -> Dense`` (flax twin of the torch backend's
    ``training.MLP``, the sine regression network of MAML). Input ``[N, input_size]``, output
    ``[N, output_size]``."""

    input_size: int = 1
    output_size: int = 1
    sizes: tuple[int, ...] = (40, 40)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        # layers named as torch's Sequential indexes them ("0", "2", ...), so both layouts agree
        for index, size in enumerate(self.sizes):
            x = nn.relu(nn.Dense(size, name=str(2 * index))(x))
        return nn.Dense(self.output_size, name=str(2 * len(self.sizes)))(x)


# a model family of the registry -> its flax class (``ModelSpec.family``)
MODEL_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "OmniglotCNN": models.OmniglotCNN,
    "OmniglotFC": models.OmniglotFC,
    "CNN4": models.CNN4,
    "MLP": MLP,
}


def build_model(name: str | ModelSpec, ways: int, conv: str = "auto") -> nn.Module:
    """The flax model of a registry spec with ``ways`` outputs. ``conv``: how its convolutions
    run ("auto", "xla", "matmul"; see ``vision.models.Conv2d``), for convolutional specs."""
    spec = model_spec(name)
    if spec.family not in MODEL_BUILDERS:
        raise ValueError(f"model family {spec.family!r} has no jax builder (MODEL_BUILDERS)")
    extra = {"implementation": conv} if spec.convolutional else {}
    return MODEL_BUILDERS[spec.family](**spec.config(ways), **extra)


def build_variables(name: str | ModelSpec, ways: int, seed: int, dtype=jnp.float32, conv: str = "auto"):
    """``(flax model, variables)`` for a registry spec: torch's seeded weights converted when
    torch is installed (``l2l_multi.interop.seeded_variables``: identical start on both
    backends), else ``model.init(PRNGKey(seed), ...)``."""
    from ... import interop

    spec = model_spec(name)
    model = build_model(spec, ways, conv)
    variables = interop.seeded_variables(spec, ways, seed, model)
    if variables is None:  # no torch here
        variables = model.init(jax.random.PRNGKey(seed), jnp.zeros((2, *spec.input_shape), jnp.float32))
    variables = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), dict(variables))
    return model, variables


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


def _build_whole(make):
    def build(model, variables, ways, **options):
        algorithm = make(model, **options)
        return algorithm, algorithm.from_variables(variables)

    return build


def _step(lr, inner):
    return {"lr": lr} if inner is None else {"inner": inner}


def _build_anil(model, variables, ways, *, lr, first_order, inner, head):
    features, feature_variables, head_variables = _split(model, variables)
    algorithm = algorithms.ANIL(features, nn.Dense(ways), first_order=first_order, **_step(lr, inner))
    return algorithm, algorithm.from_variables(feature_variables, head_variables)


def _build_protonet(model, variables, ways, *, lr, first_order, inner, head):
    features, feature_variables, _ = _split(model, variables)
    algorithm = algorithms.ProtoNet(features, ways)
    return algorithm, algorithm.from_variables(feature_variables)


def _build_metaoptnet(model, variables, ways, *, lr, first_order, inner, head):
    features, feature_variables, _ = _split(model, variables)
    # learn_scale: both heads meta-learn their logit scale, as the papers train them (torch's builder)
    algorithm = algorithms.MetaOptNet(features, ways, head=head or "ridge", learn_scale=True)
    return algorithm, algorithm.from_variables(feature_variables)


def _build_mamlpp(model, variables, ways, *, lr, first_order, inner, head, adaptation_steps):
    # MAML++ sizes its per-step rates and batch-norm rows by the number of steps
    algorithm = algorithms.MAMLpp(model, lr, max(adaptation_steps, 1), first_order=first_order)
    return algorithm, algorithm.from_variables(variables)


# an algorithm of the registry -> its jax builder ``(flax model, variables, ways, **options) ->
# (algorithm, meta_params)`` (other helpers register theirs here)
ALGORITHM_BUILDERS: dict[str, Callable[..., Any]] = {
    "maml": _build_whole(
        lambda m, lr, first_order, inner, head: algorithms.MAML(
            m, first_order=first_order, **_step(lr, inner)
        )
    ),
    "metasgd": _build_whole(
        lambda m, lr, first_order, inner, head: algorithms.MetaSGD(
            m, lr, first_order=first_order, inner=inner
        )
    ),
    "anil": _build_anil,
    "protonet": _build_protonet,
    "metaoptnet": _build_metaoptnet,
    "mamlpp": _build_mamlpp,
    "reptile": _build_whole(
        lambda m, lr, first_order, inner, head, inner_batch=None, inner_order="interleaved": (
            algorithms.Reptile(m, batch_size=inner_batch, batch_order=inner_order, **_step(lr, inner))
        )
    ),
}
