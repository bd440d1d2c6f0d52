"""The torch backend's registry builders: torch models of the registry's model specs and the
algorithms ``l2l.MetaLearner`` trains (``(model, **options) -> algorithm``). ``training``
re-exports them; helpers register more in these dicts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..._registry import ModelSpec, model_spec
from . import algorithms
from .vision import models


class MLP(torch.nn.Sequential):
    """``[Linear -> ReLU] * len(sizes) -> Linear``, PyTorch's default initialisation (the sine
    regression network of MAML). Input ``[N, input_size]``, output ``[N, output_size]``."""

    def __init__(self, input_size: int = 1, output_size: int = 1, sizes: tuple[int, ...] = (40, 40)):
        layers, width = [], input_size
        for size in sizes:
            layers += [torch.nn.Linear(width, size), torch.nn.ReLU()]
            width = size
        super().__init__(*layers, torch.nn.Linear(width, output_size))
        self.input_size, self.output_size, self.sizes = input_size, output_size, tuple(sizes)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments (the flax twin is built from them)."""
        return {"input_size": self.input_size, "output_size": self.output_size, "sizes": self.sizes}


# a model family of the registry -> its torch class (``ModelSpec.family``)
MODEL_BUILDERS: dict[str, Callable[..., torch.nn.Module]] = {
    "OmniglotCNN": models.OmniglotCNN,
    "OmniglotFC": models.OmniglotFC,
    "CNN4": models.CNN4,
    "MLP": MLP,
}


def build_model(
    name: str | ModelSpec, ways: int, seed: int, dtype: torch.dtype = torch.float32
) -> torch.nn.Module:
    """The named model (``l2l_multi._registry.MODEL_SPECS``, or a ``ModelSpec``) with ``ways``
    outputs, initialised after ``torch.manual_seed(seed)``."""
    spec = model_spec(name)
    if spec.family not in MODEL_BUILDERS:
        raise ValueError(f"model family {spec.family!r} has no torch builder (MODEL_BUILDERS)")
    torch.manual_seed(seed)
    return MODEL_BUILDERS[spec.family](**spec.config(ways)).to(dtype)


def _features_and_head(model: torch.nn.Module):
    if not (hasattr(model, "features") and hasattr(model, "classifier")):
        raise ValueError(f"{type(model).__name__} has no features/classifier split for this algorithm")
    return model.features, model.classifier


def _build_maml(model, *, lr, first_order, inner, head):
    step = {"lr": lr} if inner is None else {"inner": inner}
    return algorithms.MAML(model, first_order=first_order, **step)


def _build_metasgd(model, *, lr, first_order, inner, head):
    return algorithms.MetaSGD(model, lr=lr, first_order=first_order, inner=inner)


def _build_anil(model, *, lr, first_order, inner, head):
    step = {"lr": lr} if inner is None else {"inner": inner}
    return algorithms.ANIL(*_features_and_head(model), first_order=first_order, **step)


def _build_protonet(model, *, lr, first_order, inner, head):
    return algorithms.ProtoNet(_features_and_head(model)[0])


def _build_metaoptnet(model, *, lr, first_order, inner, head):
    head = "ridge" if head is None else head
    # both heads meta-learn their logit scale, as the papers train them (R2D2's scale and bias; the
    # SVM's scale: MetaOptNet's ClassificationHead(enable_scale=True))
    return algorithms.MetaOptNet(_features_and_head(model)[0], head=head, learn_scale=True)


def _build_reptile(model, *, lr, first_order, inner, head, inner_batch=None, inner_order="interleaved"):
    step = {"lr": lr} if inner is None else {"inner": inner}
    return algorithms.Reptile(model, batch_size=inner_batch, batch_order=inner_order, **step)


def _build_mamlpp(model, *, lr, first_order, inner, head, adaptation_steps):
    # MAML++ sizes its per-step rates and batch-norm rows by the number of steps
    return algorithms.MAMLpp(model, lr=lr, adaptation_steps=max(adaptation_steps, 1), first_order=first_order)


# an algorithm of the registry -> its torch builder (other helpers register theirs here)
ALGORITHM_BUILDERS: dict[str, Callable[..., Any]] = {
    "maml": _build_maml,
    "metasgd": _build_metasgd,
    "anil": _build_anil,
    "protonet": _build_protonet,
    "metaoptnet": _build_metaoptnet,
    "mamlpp": _build_mamlpp,
    "reptile": _build_reptile,
}
