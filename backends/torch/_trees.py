"""The torch learners' meta-parameters as the contract's trees (``MetaLearner.meta_parameters``,
``meta_gradients``, ``adapted_parameters``): :func:`torch_tree` groups ``{parameter name: tensor}``
under the contract's top-level keys in torch layout, :func:`flax_tree` converts such a tree to
the jax backend's layout through ``l2l_multi.interop``."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from ..._registry import AlgorithmSpec

# parameter-name prefixes of the torch learners -> the contract's top-level keys
TREE_KEYS = (("module.", "model"), ("features.", "features"), ("head.", "head"), ("transform.", "transform"))


def torch_tree(algorithm: torch.nn.Module, named: dict[str, torch.Tensor]) -> dict[str, dict]:
    """``{parameter name of the algorithm: tensor}`` as the contract's tree in torch layout:
    ``{"model": {name: array}, "lrs": {model parameter name: array}, "features": ...}`` (numpy
    copies, the tensors' shapes and dtypes; names without a known prefix go under "other")."""
    module = getattr(algorithm, "module", None)
    model_names = [name for name, _ in module.named_parameters()] if module is not None else []
    tree: dict[str, dict[str, np.ndarray]] = {}
    for name, tensor in named.items():
        value = tensor.detach().cpu().numpy().copy()
        if name.startswith("lrs."):
            tree.setdefault("lrs", {})[model_names[int(name.split(".")[1])]] = value
            continue
        for prefix, key in TREE_KEYS:
            if name.startswith(prefix):
                tree.setdefault(key, {})[name[len(prefix) :]] = value
                break
        else:
            tree.setdefault("other", {})[name] = value
    return tree


def _flax_params(model: torch.nn.Module, named: dict[str, np.ndarray]) -> dict:
    """``{name in model: array}`` (others zero) as the flax ``params`` tree of ``model``."""
    from ... import interop

    model = copy.deepcopy(model)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(torch.as_tensor(named[name]) if name in named else torch.zeros_like(param))
    return interop.torch_to_flax(model)["params"]


def flax_tree(algorithm: torch.nn.Module, spec: AlgorithmSpec, model: torch.nn.Module, tree: dict) -> dict:
    """A :func:`torch_tree` of ``algorithm`` (built by ``spec`` around ``model``) in the jax
    backend's layout: flax ``params`` trees of numpy arrays. Raises ``ValueError`` naming an entry
    it cannot convert."""
    if callable(getattr(algorithm, "flax_layout", None)):  # a learner that converts its own (MAML++)
        return numpy_tree(algorithm.flax_layout(tree))
    flax: dict[str, Any] = {}
    if "model" in tree:
        if spec.kind == "head":  # ANIL adapts the classifier only
            named = {f"classifier.{k}": v for k, v in tree["model"].items()}
            flax["model"] = {"params": _flax_params(model, named)["classifier"]}
        else:
            flax["model"] = {"params": _flax_params(model, tree["model"])}
    if "lrs" in tree:
        flax["lrs"] = _flax_params(model, tree["lrs"])
    if "features" in tree:
        named = {f"features.{k}": v for k, v in tree["features"].items()}
        params = _flax_params(model, named)
        flax["features"] = {"params": {k: v for k, v in params.items() if k != "classifier"}}
    if "head" in tree:
        flax["head"] = {k: np.asarray(v) for k, v in tree["head"].items()}
    for key in tree.keys() - flax.keys():
        raise ValueError(f"layout='flax' cannot convert the {key!r} entry of {spec.name}")
    return numpy_tree(flax)


def numpy_tree(tree):
    """Every leaf of a nested dict as a numpy array."""
    if isinstance(tree, dict):
        return {k: numpy_tree(v) for k, v in tree.items()}
    return np.asarray(tree)
