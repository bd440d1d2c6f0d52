"""How ``l2l_multi.interop`` pairs the layers of a torch model with those of a flax model.

Each model is run once on a small input (torch on zeros in evaluation mode, its buffers and
modes restored afterwards; flax under ``jax.eval_shape``, shapes only) and its stateful layers
are listed in the order they are called; the two lists must agree in length and kind (conv,
linear, batch norm). Per layer, values move between torch's and flax's layouts (see the
``l2l_multi.interop`` docstring). Frameworks are imported inside the functions only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

_OUR_FLAX_MODELS = "l2l_multi.backends.jax.vision"
_COLLECTIONS = ("params", "batch_stats")
# flax name -> torch name, per layer kind
_TORCH_NAMES = {
    "conv": {"kernel": "weight", "bias": "bias"},
    "linear": {"kernel": "weight", "bias": "bias"},
    "batch_norm": {
        "scale": "weight",
        "bias": "bias",
        "mean": "running_mean",
        "var": "running_var",
        "num_batches_tracked": "num_batches_tracked",
    },
}
_OPTIONAL = {"num_batches_tracked"}  # flax's nn.BatchNorm has no counter; torch's is kept then


# ----------------------------------------------------------------------------------------------
# layers of a torch model


class _TorchLayer(NamedTuple):
    name: str  # dotted module name
    module: Any
    kind: str  # "conv", "linear" or "batch_norm"
    flattened: tuple[int, int, int] | None  # (C, H, W) of the feature map a linear layer flattens


class _FlaxLayer(NamedTuple):
    path: tuple[str, ...]
    kind: str
    template: dict | None  # {collection: {name: ShapeDtypeStruct}}; None: whatever torch gives


def _holds_state(module) -> bool:
    return any(p is not None for p in module._parameters.values()) or any(
        b is not None for b in module._buffers.values()
    )


def _torch_kind(name: str, module) -> str:
    import torch

    if isinstance(module, torch.nn.modules.conv._ConvNd) and not module.transposed:
        return "conv"
    if isinstance(module, torch.nn.Linear):
        return "linear"
    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
        return "batch_norm"
    raise TypeError(
        f"cannot convert torch module {name or '(root)'!r} of type {type(module).__name__}: only "
        "Conv1d/2d/3d, Linear and BatchNorm1d/2d/3d may hold parameters or buffers"
    )


def _trace_torch(module, input_shape: tuple, stateful: list) -> tuple[list, dict]:
    """Stateful submodules in the order forward calls them, and what each linear layer flattens."""
    import torch

    names = {id(m): name for name, m in module.named_modules()}
    stateful_ids = {id(m) for _, m in stateful}
    called: list = []
    flattened: dict = {}
    # The latest 4-d output of a leaf module since the last linear layer: the feature map that a
    # linear layer flattens, if its size matches (flattening may be a module or inline code).
    feature_map: list = [None]

    def before(submodule, args):
        if isinstance(submodule, torch.nn.Linear):
            shape, feature_map[0] = feature_map[0], None
            name = names[id(submodule)]
            if shape is not None and name not in flattened:
                channels, height, width = shape[1:]
                if channels * height * width == submodule.in_features and height * width > 1:
                    flattened[name] = (channels, height, width)
        if id(submodule) in stateful_ids and not any(m is submodule for _, m in called):
            called.append((names[id(submodule)], submodule))

    def after(submodule, args, output):
        if isinstance(output, torch.Tensor) and output.ndim == 4:
            feature_map[0] = tuple(output.shape)

    reference = next(module.parameters(), None)
    dtype = reference.dtype if reference is not None and reference.is_floating_point() else torch.float32
    device = reference.device if reference is not None else "cpu"
    # Not torch.func.functional_call with meta weights: when a submodule is registered twice (as
    # learn2learn-style models do), it does not put the original parameters back.
    saved = [(buffer, buffer.clone()) for buffer in module.buffers()]
    # Evaluation mode: dropout then draws no random numbers and step counters (ResNet12's DropBlock
    # warm-up) do not advance; the layers are called in the same order.
    modes = [(submodule, submodule.training) for submodule in module.modules()]
    module.eval()
    handles = []
    for _, submodule in module.named_modules():
        handles.append(submodule.register_forward_pre_hook(before))
        if next(submodule.children(), None) is None:
            handles.append(submodule.register_forward_hook(after))
    try:
        with torch.no_grad():
            module(torch.zeros(input_shape, dtype=dtype, device=device))
    except Exception as error:
        raise RuntimeError(
            f"running {type(module).__name__} on zeros of shape {tuple(input_shape)} failed; "
            "input_shape must be a valid torch input shape for the model (batch of 2 or more)"
        ) from error
    finally:
        for handle in handles:
            handle.remove()
        for submodule, training in modes:
            submodule.training = training
        with torch.no_grad():  # the run must leave no trace, e.g. in batch-norm running statistics
            for buffer, value in saved:
                buffer.copy_(value)
    unused = [name for name, m in stateful if not any(m is c for _, c in called)]
    if unused:
        raise ValueError(
            f"torch submodules {unused} hold weights but forward never called them on an input of shape "
            f"{tuple(input_shape)}; such weights have no flax counterpart"
        )
    return called, flattened


def _torch_layers(module, input_shape: tuple | None) -> list[_TorchLayer]:
    stateful = [(name, m) for name, m in module.named_modules() if _holds_state(m)]
    kinds = {name: _torch_kind(name, m) for name, m in stateful}
    if input_shape is None:
        ordered, flattened = stateful, {}
    else:
        ordered, flattened = _trace_torch(module, input_shape, stateful)
    return [_TorchLayer(name, m, kinds[name], flattened.get(name)) for name, m in ordered]


# ----------------------------------------------------------------------------------------------
# this library's models


_OUR_TORCH_MODELS = "l2l_multi.backends.torch.vision"


def _our_torch_twin(module) -> tuple[str, dict, tuple | None] | None:
    """(flax class name, its arguments, a torch input shape) for this library's torch models: the
    flax twin has the torch class's name and takes its ``get_config()``; only the sample input
    shape (to trace both models) depends on the family."""
    if not type(module).__module__.startswith(_OUR_TORCH_MODELS) or not callable(
        getattr(module, "get_config", None)
    ):
        return None
    name, config = type(module).__name__, module.get_config()
    shape = _TWIN_INPUT_SHAPES.get(name)
    return name, config, None if shape is None else shape(module, config)


def _cnn4_shape(module, config: dict) -> tuple | None:
    side = _square_side(config["embedding_size"], config["hidden_size"])
    window = int(2 * (4 // config["layers"]))
    if side is None:
        return None
    side *= window ** config["layers"]
    return (2, config["channels"], side, side)


def _conv_base_shape(module, config: dict) -> tuple:
    side = int(2 * config["max_pool_factor"]) ** config["layers"]  # every block shrinks it to 1x1
    return (2, config["channels"], side, side)


def _resnet12_shape(module, config: dict) -> tuple | None:
    side = 16  # four 2x2 poolings: 16x16 -> 1x1 maps
    if "output_size" in config and not config["avg_pool"]:  # the classifier fixes the flattened map
        map_side = _square_side(config["hidden_size"], module.features.layer4[0].conv1.out_channels)
        side = None if map_side is None else 16 * map_side
    return None if side is None else (2, config["channels"], side, side)


# a torch model class of this library -> a sample input shape from (module, get_config())
_TWIN_INPUT_SHAPES = {
    "OmniglotFC": lambda module, config: (2, config["input_size"]),
    "OmniglotCNN": lambda module, config: (2, 1, 28, 28),
    "CNN4": _cnn4_shape,
    "ConvBase": _conv_base_shape,
    "CNN4Backbone": _conv_base_shape,
    "ResNet12": _resnet12_shape,
    "ResNet12Backbone": _resnet12_shape,
    "WRN28": lambda module, config: (2, 3, 4, 4),  # 4x4 -> 1x1 maps
    "WRN28Backbone": lambda module, config: (2, 3, 4, 4),
}


def _square_side(embedding_size: int, hidden_size: int) -> int | None:
    side = math.isqrt(embedding_size // hidden_size) if embedding_size % hidden_size == 0 else 0
    return side if side > 0 and side * side * hidden_size == embedding_size else None


def _is_our_flax(flax_module) -> bool:
    return type(flax_module).__module__.startswith(_OUR_FLAX_MODELS)


# ----------------------------------------------------------------------------------------------
# layers of a flax model


def _subtree(tree: Mapping, path: tuple) -> Mapping:
    for key in path:
        tree = tree.get(key, {}) if isinstance(tree, Mapping) else {}
    return tree if isinstance(tree, Mapping) else {}


def _flax_kind(path: tuple, template: dict) -> str:
    params, stats = template.get("params", {}), template.get("batch_stats", {})
    kernel = params.get("kernel")
    if kernel is not None and set(params) <= {"kernel", "bias"} and not stats:
        return "linear" if len(kernel.shape) == 2 else "conv"
    if set(params) <= {"scale", "bias"} and set(stats) <= {"mean", "var", "num_batches_tracked"}:
        return "batch_norm"
    raise TypeError(
        f"cannot convert the flax layer {'/'.join(path) or '(root)'!r} with params {sorted(params)} and "
        f"batch_stats {sorted(stats)}: only convolutions and dense layers ('kernel', 'bias') and batch "
        "norms ('scale', 'bias', 'mean', 'var') are supported"
    )


def _flax_layers(flax_module, input_shape: tuple) -> list[_FlaxLayer]:
    """Layers owning variables, in the order ``flax_module`` calls them (shapes only, no compute)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    called: list = []

    def record(next_function, args, kwargs, context):
        path = tuple(context.module.path)
        if path not in called:
            called.append(path)
        return next_function(*args, **kwargs)

    sample = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    try:
        with nn.intercept_methods(record):
            shapes = jax.eval_shape(lambda x: flax_module.init(jax.random.key(0), x), sample)
    except Exception as error:
        raise RuntimeError(
            f"initialising {type(flax_module).__name__} on an input of shape {tuple(input_shape)} failed; "
            "pass input_shape (the torch model's input shape; 4-d shapes are given to flax models other "
            "than this library's as NHWC)"
        ) from error
    other = sorted(set(shapes) - set(_COLLECTIONS))
    if other:
        raise ValueError(f"flax_module has variable collections {other}; only {list(_COLLECTIONS)} convert")
    layers, covered = [], set()
    for path in called:
        template = {}
        for collection in _COLLECTIONS:
            direct = {
                k: v
                for k, v in _subtree(shapes.get(collection, {}), path).items()
                if not isinstance(v, Mapping)
            }
            if direct:
                template[collection] = direct
                covered.update((collection, *path, k) for k in direct)
        if template:
            layers.append(_FlaxLayer(path, _flax_kind(path, template), template))
    leaves = {
        tuple(str(getattr(k, "key", k)) for k in key_path)
        for key_path, _ in jax.tree_util.tree_flatten_with_path(dict(shapes))[0]
    }
    if leaves - covered:
        raise ValueError(f"flax variables {sorted(leaves - covered)} belong to no called layer")
    return layers


# ----------------------------------------------------------------------------------------------
# pairing and per-layer conversion


def _describe(layers: list, torch_side: bool) -> str:
    names = [
        f"{layer.name or '(root)'} ({layer.kind})"
        if torch_side
        else f"{'/'.join(layer.path) or '(root)'} ({layer.kind})"
        for layer in layers
    ]
    return ", ".join(names)


def _plan(torch_module, flax_module, input_shape) -> tuple[list, bool]:
    """[(torch layer, flax layer)] in call order, and whether flattened linear inputs reorder."""
    import torch

    if not isinstance(torch_module, torch.nn.Module):
        raise TypeError(f"torch_module must be a torch.nn.Module, got {type(torch_module).__name__}")
    twin = _our_torch_twin(torch_module)
    if input_shape is None and twin is not None:
        input_shape = twin[2]
    if flax_module is None and twin is not None:
        from l2l_multi.backends.jax.vision import models as flax_models

        flax_module = getattr(flax_models, twin[0])(**twin[1])
    modules = list(torch_module.modules())
    has_conv = any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in modules)
    has_linear = any(isinstance(m, torch.nn.Linear) for m in modules)
    # Running the model is needed to pair layers by call order, and to see what a linear layer
    # after convolutions flattens; otherwise registration order and torch's names suffice.
    run = flax_module is not None or (has_conv and has_linear)
    if run and input_shape is None:
        why = (
            "to initialise flax_module and pair its layers with torch's"
            if flax_module is not None
            else "to find the feature-map shape a linear layer flattens"
        )
        raise ValueError(
            f"input_shape=None: the input shape of {type(torch_module).__name__} is needed {why}; pass "
            "input_shape, e.g. (2, 3, 32, 32) (torch layout, batch of 2 or more)"
        )
    torch_layers = _torch_layers(torch_module, input_shape if run else None)
    ours = flax_module is not None and _is_our_flax(flax_module)
    if flax_module is None:  # a tree named after torch's modules
        return [
            (t, _FlaxLayer(tuple(t.name.split(".")) if t.name else (), t.kind, None)) for t in torch_layers
        ], True
    flax_shape = tuple(input_shape)
    if len(flax_shape) == 4 and not ours:  # flax convolutions are NHWC; this library's models take NCHW
        flax_shape = (flax_shape[0], flax_shape[2], flax_shape[3], flax_shape[1])
    flax_layers = _flax_layers(flax_module, flax_shape)
    if len(torch_layers) != len(flax_layers) or any(
        t.kind != f.kind for t, f in zip(torch_layers, flax_layers)
    ):
        raise ValueError(
            f"the layers of {type(torch_module).__name__} and {type(flax_module).__name__} do not pair up "
            f"in call order.\n  torch: {_describe(torch_layers, True)}\n"
            f"  flax:  {_describe(flax_layers, False)}"
        )
    return list(zip(torch_layers, flax_layers)), not ours


def _linear_weight_to_flax(weight, flattened, reorder: bool):
    if reorder and flattened is not None:  # torch flattened (C, H, W), flax code flattens (H, W, C)
        channels, height, width = flattened
        weight = weight.reshape(-1, channels, height, width).permute(0, 2, 3, 1).reshape(weight.shape[0], -1)
    return weight.t()


def _linear_kernel_to_torch(kernel, flattened, reorder: bool):
    weight = kernel.t()
    if reorder and flattened is not None:
        channels, height, width = flattened
        weight = weight.reshape(-1, height, width, channels).permute(0, 3, 1, 2).reshape(weight.shape[0], -1)
    return weight


def _conv_permutation(ndim: int) -> tuple[int, ...]:
    return (*range(2, ndim), 1, 0)  # [out, in, *spatial] -> [*spatial, in, out]


def _torch_values(layer: _TorchLayer, reorder: bool) -> dict:
    """{collection: {flax name: torch tensor}} of one torch layer, in flax's layouts."""
    module, values = layer.module, {"params": {}, "batch_stats": {}}
    for flax_name, torch_name in _TORCH_NAMES[layer.kind].items():
        tensor = getattr(module, torch_name, None)
        if tensor is None:
            continue
        tensor = tensor.detach()
        if flax_name == "kernel" and layer.kind == "conv":
            tensor = tensor.permute(*_conv_permutation(tensor.ndim))
        elif flax_name == "kernel":
            tensor = _linear_weight_to_flax(tensor, layer.flattened, reorder)
        collection = "batch_stats" if torch_name.startswith(("running", "num_batches")) else "params"
        values[collection][flax_name] = tensor
    return values


def _kernel_to_torch(kind: str, tensor, flattened, reorder: bool):
    if kind == "conv":
        forward = _conv_permutation(tensor.ndim)
        return tensor.permute(*sorted(range(tensor.ndim), key=forward.__getitem__))
    return _linear_kernel_to_torch(tensor, flattened, reorder)


def _flax_where(collection: str, path: tuple, name: str) -> str:
    return "/".join((collection, *path, name))
