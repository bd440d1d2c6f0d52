"""Move arrays and model weights between torch and jax/flax.

- ``to_jax`` / ``to_torch``: arrays (or dicts/lists/tuples of arrays) through DLPack, sharing
  memory on CPU where the frameworks allow.
- ``torch_to_flax`` / ``flax_to_torch``: weights of a torch model as the variables of the
  matching flax model (``{'params': ..., 'batch_stats': ...}``) and back, bitwise.

Layers are paired in the order the models *call* them (found by running each model once: torch
on zeros of batch 2 under ``no_grad`` in evaluation mode, its buffers and modes restored
afterwards; flax under ``jax.eval_shape``), so the two models may name their layers differently. Per layer:

- convolution: torch weight ``[out, in, kh, kw]`` (OIHW) <-> flax ``'kernel'`` ``[kh, kw, in, out]``
  (HWIO); ``bias`` as is.
- linear: ``weight`` ``[out, in]`` <-> ``'kernel'`` ``[in, out]``. A linear layer that flattens a
  conv feature map ``[C, H, W]`` also has its inputs reordered (C, H, W) <-> (H, W, C) when the
  flax model is not one of ours, because flax code flattens NHWC maps. This library's flax
  models flatten in torch's (C, H, W) order, so for them no reorder is needed.
- batch norm: ``weight``/``bias`` <-> params ``'scale'``/``'bias'``; ``running_mean``/
  ``running_var``/``num_batches_tracked`` <-> batch_stats ``'mean'``/``'var'``/
  ``'num_batches_tracked'`` (copied as stored: the flax ``BatchNorm`` of
  ``l2l_multi.backends.jax.vision.models`` has torch's semantics; flax's own ``nn.BatchNorm``
  has no counter, uses momentum = 1 - torch's, and updates a biased variance).

This is a core module: torch, jax and flax are imported inside the functions only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ._arrays import is_jax_array, is_torch_tensor
from ._interop_layers import (
    _COLLECTIONS,
    _OPTIONAL,
    _TORCH_NAMES,
    _flax_where,
    _kernel_to_torch,
    _plan,
    _subtree,
    _torch_values,
)

__all__ = ["flax_to_torch", "seeded_variables", "to_jax", "to_torch", "torch_to_flax"]


# ----------------------------------------------------------------------------------------------
# arrays


def _map_tree(function: Callable, tree: Any, path: tuple = ()) -> Any:
    """Apply ``function(leaf, path)`` to the leaves of nested dicts, lists and tuples."""
    if isinstance(tree, Mapping):
        items = {key: _map_tree(function, value, (*path, key)) for key, value in tree.items()}
        try:
            return type(tree)(items)  # dict, OrderedDict, flax FrozenDict
        except TypeError:
            return items
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):  # a NamedTuple
        return type(tree)(*(_map_tree(function, v, (*path, i)) for i, v in enumerate(tree)))
    if isinstance(tree, (list, tuple)):
        return type(tree)(_map_tree(function, v, (*path, i)) for i, v in enumerate(tree))
    return function(tree, path)


def _where(path: tuple) -> str:
    return "".join(f"[{key!r}]" for key in path) or "the argument itself"


def _leaf_to_jax(value: Any, path: tuple) -> Any:
    import jax.numpy as jnp

    if is_torch_tensor(value):
        tensor = value.detach()  # DLPack refuses tensors that require grad; detach() shares memory
        tensor = tensor.resolve_conj().resolve_neg()
        if not tensor.is_contiguous():
            tensor = tensor.contiguous()  # a copy: jax rejects strided views
        return jnp.from_dlpack(tensor)
    if is_jax_array(value):
        return value
    if isinstance(value, (np.ndarray, np.generic, bool, int, float)):
        return jnp.asarray(value)
    raise TypeError(
        f"to_jax: the leaf at {_where(path)} is a {type(value).__name__}; allowed leaves are torch "
        "tensors, jax arrays, numpy arrays and Python scalars (in dicts, lists and tuples)"
    )


def _leaf_to_torch(value: Any, path: tuple) -> Any:
    import torch

    if is_jax_array(value):
        import jax

        if isinstance(value, jax.core.Tracer):
            raise TypeError(
                f"to_torch: the leaf at {_where(path)} is a traced jax value ({type(value).__name__}); "
                "convert concrete arrays, outside jax.jit/grad/vmap"
            )
        return torch.from_dlpack(value)
    if is_torch_tensor(value):
        return value
    if isinstance(value, (np.ndarray, np.generic, bool, int, float)):
        return torch.as_tensor(np.asarray(value))
    raise TypeError(
        f"to_torch: the leaf at {_where(path)} is a {type(value).__name__}; allowed leaves are jax "
        "arrays, torch tensors, numpy arrays and Python scalars (in dicts, lists and tuples)"
    )


def to_jax(tree: Any) -> Any:
    """Torch tensors as jax arrays, through DLPack; also dicts/lists/tuples of them.

    On CPU the result shares memory with the tensor (no copy) when the tensor is contiguous and
    its data is 64-byte aligned (true of every freshly allocated tensor; a slice that starts
    mid-buffer is copied by jax). Copies are made, and nothing is shared, when:

    - the tensor is not contiguous (a transposed or strided view): ``.contiguous()`` first;
    - it is float64/int64 and jax's x64 mode is off: jax narrows it to float32/int32.

    A tensor that requires grad is detached first (DLPack refuses it); gradients do not flow.
    jax assumes arrays never change: do not modify a shared tensor in place afterwards.

    Args:
        tree: a torch tensor, or nested dicts/lists/tuples of tensors; jax arrays pass through,
            numpy arrays and Python scalars are converted with ``jnp.asarray``.

    Returns:
        The same structure with ``jax.Array`` leaves (dtype kept, up to the x64 narrowing).

    Example:
        >>> import torch
        >>> tensor = torch.zeros(3)
        >>> array = to_jax({"w": tensor})["w"]
        >>> _ = tensor.fill_(7.0)  # shared memory: visible on the jax side
        >>> array
        Array([7., 7., 7.], dtype=float32)
    """
    return _map_tree(_leaf_to_jax, tree)


def to_torch(tree: Any) -> Any:
    """Jax arrays as torch tensors, through DLPack; also dicts/lists/tuples of them.

    On CPU the tensor shares memory with the jax array (no copy). jax arrays are meant to be
    immutable: writing into the tensor changes the jax array too, so ``.clone()`` before
    modifying it in place. Traced values (inside ``jax.jit``/``grad``/``vmap``) are refused.

    Args:
        tree: a jax array, or nested dicts/lists/tuples of arrays; torch tensors pass through,
            numpy arrays and Python scalars are converted with ``torch.as_tensor``.

    Returns:
        The same structure with ``torch.Tensor`` leaves of the same dtypes and shapes.

    Example:
        >>> import jax.numpy as jnp
        >>> to_torch([jnp.arange(3.0), jnp.ones((), jnp.int32)])
        [tensor([0., 1., 2.]), tensor(1, dtype=torch.int32)]
    """
    return _map_tree(_leaf_to_torch, tree)


# ----------------------------------------------------------------------------------------------
# weights


def _set(tree: dict, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def _leaf_paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    if isinstance(tree, Mapping):
        return [p for key, value in tree.items() for p in _leaf_paths(value, (*prefix, key))]
    return [prefix]


def torch_to_flax(torch_module, flax_module=None, *, input_shape: tuple | None = None) -> dict:
    """The weights of a torch model as the variables of the matching flax model (copies).

    Args:
        torch_module: a ``torch.nn.Module`` whose parameters and buffers live in Conv1d/2d/3d,
            Linear and BatchNorm layers: this library's vision models or any Sequential-like model.
        flax_module: the flax model to produce variables for; its parameter tree comes from
            ``flax_module.init`` (shapes only) and every converted shape is checked against it.
            None: for this library's torch models their flax twin (same class name and
            arguments); for other models a tree named after torch's modules
            (``'0'/'kernel'``, ``'features'/'1'/'scale'``, ...; no ``num_batches_tracked``).
        input_shape: keyword; the torch model's input shape (batch of 2 or more). Needed when
            pairing with a ``flax_module`` that is not known here, or to find what a linear layer
            after convolutions flattens; this library's models know theirs. Flax models that are
            not this library's receive 4-d shapes as NHWC.

    Returns:
        ``{'params': {...}}`` plus ``'batch_stats'`` when the model has running statistics: nested
        dicts of ``jax.Array`` on jax's default device, with the torch tensors' dtypes (float64
        narrows to float32 unless jax's x64 mode is on), sharing no memory with the torch model.

    Raises:
        ValueError: layers that do not pair up (listed), or a shape or name mismatch (named).

    Example:
        >>> import torch
        >>> from l2l_multi.backends.torch.vision.models import OmniglotCNN
        >>> variables = torch_to_flax(OmniglotCNN(5))
        >>> variables["params"]["features"]["0"]["conv"]["kernel"].shape
        (3, 3, 1, 64)
    """
    import torch

    pairs, reorder = _plan(torch_module, flax_module, input_shape)
    variables: dict = {"params": {}, "batch_stats": {}}
    for torch_layer, flax_layer in pairs:
        values = _torch_values(torch_layer, reorder)
        for collection in _COLLECTIONS:
            given = values[collection]
            if flax_layer.template is None:
                expected = {name: None for name in given if name not in _OPTIONAL}
            else:
                expected = flax_layer.template.get(collection, {})
            missing = sorted(set(expected) - set(given))
            if missing:
                raise ValueError(
                    f"flax {_flax_where(collection, flax_layer.path, missing[0])} has no counterpart in "
                    f"torch layer {torch_layer.name!r} ({type(torch_layer.module).__name__}): it has no "
                    f"{_TORCH_NAMES[torch_layer.kind][missing[0]]!r}"
                )
            for name, tensor in given.items():
                where = _flax_where(collection, flax_layer.path, name)
                torch_name = f"{torch_layer.name}.{_TORCH_NAMES[torch_layer.kind][name]}".lstrip(".")
                if name not in expected:
                    if name in _OPTIONAL:
                        continue
                    raise ValueError(f"torch {torch_name!r} has no counterpart: flax_module has no {where}")
                want = expected[name]
                if want is not None and tuple(tensor.shape) != tuple(want.shape):
                    raise ValueError(
                        f"torch {torch_name!r} has shape {tuple(tensor.shape)} in flax layout, but "
                        f"flax {where} has shape {tuple(want.shape)}"
                    )
                # the torch dtype is kept (float64 stays float64 under x64): a cross-check must not
                # round one side to the template's float32
                array = to_jax(tensor.clone(memory_format=torch.contiguous_format))
                _set(variables[collection], (*flax_layer.path, name), array)
    if not variables["batch_stats"]:
        del variables["batch_stats"]
    import jax

    # dlpack leaves CPU tensors on jax's CPU device; on a GPU machine a jitted step would then mix
    # devices, so the variables go where jax puts new arrays (this process's: in a multi-process
    # job devices()[0] may belong to another process)
    return jax.device_put(variables, jax.local_devices()[0])


def _host_torch(value: Any):
    """A torch view (CPU jax arrays) or copy of one leaf of ``variables``."""
    import torch

    if is_jax_array(value) and all(device.platform == "cpu" for device in value.devices()):
        return to_torch(value)
    if is_torch_tensor(value):
        return value.detach()
    return torch.as_tensor(np.asarray(value))


def flax_to_torch(variables: Mapping, torch_module, flax_module=None, *, input_shape: tuple | None = None):
    """Load flax variables into a torch model, in place (inverse of ``torch_to_flax``).

    Every value is checked before anything is written, so on an error the model is unchanged.
    A torch ``num_batches_tracked`` buffer with no flax counterpart is left as it is.

    Args:
        variables: ``{'params': ..., 'batch_stats': ...}`` nested mappings of arrays (jax, numpy
            or torch), as from ``flax_module.init`` or ``torch_to_flax``.
        torch_module: the ``torch.nn.Module`` to load into (see ``torch_to_flax``).
        flax_module: the flax model ``variables`` belong to; None as in ``torch_to_flax``.
        input_shape: keyword; as in ``torch_to_flax``.

    Returns:
        ``torch_module`` itself, its parameters and buffers overwritten (same tensor objects, so
        an optimizer built on them stays valid).

    Raises:
        ValueError: layers that do not pair up, a missing, extra or misshapen variable (named).

    Example:
        >>> import jax, jax.numpy as jnp, torch
        >>> from l2l_multi.backends.jax.vision import models as flax_models
        >>> from l2l_multi.backends.torch.vision.models import OmniglotFC
        >>> x = jnp.ones((2, 784))
        >>> variables = flax_models.OmniglotFC().init(jax.random.key(0), x)
        >>> model = flax_to_torch(variables, OmniglotFC())
        >>> bool(torch.equal(model.classifier.bias, to_torch(variables["params"]["classifier"]["bias"])))
        True
    """
    if not isinstance(variables, Mapping):
        raise TypeError(f"variables must be a mapping like {{'params': ...}}, got {type(variables).__name__}")
    other = sorted(set(variables) - set(_COLLECTIONS))
    if other:
        raise ValueError(f"variables has collections {other}; only {list(_COLLECTIONS)} convert")
    pairs, reorder = _plan(torch_module, flax_module, input_shape)
    writes, consumed = [], set()
    for torch_layer, flax_layer in pairs:
        module = torch_layer.module
        for flax_name, torch_name in _TORCH_NAMES[torch_layer.kind].items():
            collection = "batch_stats" if torch_name.startswith(("running", "num_batches")) else "params"
            where = _flax_where(collection, flax_layer.path, flax_name)
            full_name = f"{torch_layer.name}.{torch_name}".lstrip(".")
            target = getattr(module, torch_name, None)
            value = _subtree(variables.get(collection, {}), flax_layer.path).get(flax_name)
            if target is None:
                if value is not None:
                    raise ValueError(f"variables {where} has no counterpart: torch {full_name!r} is None")
                continue
            if value is None:
                if flax_name in _OPTIONAL:
                    continue
                raise ValueError(f"variables have no {where} for torch {full_name!r}")
            tensor = _host_torch(value)
            if flax_name == "kernel":
                tensor = _kernel_to_torch(torch_layer.kind, tensor, torch_layer.flattened, reorder)
            if tuple(tensor.shape) != tuple(target.shape):
                raise ValueError(
                    f"variables {where} gives shape {tuple(tensor.shape)} in torch layout, but torch "
                    f"{full_name!r} has shape {tuple(target.shape)}"
                )
            writes.append((target, tensor))
            consumed.add((collection, *flax_layer.path, flax_name))
    extra = sorted(
        "/".join(map(str, (c, *p)))
        for c in _COLLECTIONS
        for p in _leaf_paths(variables.get(c, {}))
        if p and (c, *p) not in consumed
    )
    if extra:
        raise ValueError(f"variables {extra} have no counterpart in {type(torch_module).__name__}")
    import torch

    with torch.no_grad():
        for target, tensor in writes:
            target.copy_(tensor)
    return torch_module


def seeded_variables(model: Any, output_size: int, seed: int, flax_module=None) -> dict | None:
    """The torch backend's model of a registry spec, built after ``torch.manual_seed(seed)``,
    as the variables of ``flax_module`` (its flax twin): how the jax backend starts from the
    same weights as torch without importing the torch backend itself.

    Args:
        model: a name of ``l2l_multi._registry.MODEL_SPECS`` or a ``ModelSpec``.
        output_size: the model's outputs (classes); seed: torch's seed.
        flax_module: the flax model to fill; None: the twin ``torch_to_flax`` finds.

    Returns:
        ``{'params': ..., ['batch_stats': ...]}`` as from ``torch_to_flax`` (float32), or
        ``None`` when torch cannot be imported (the caller then initialises with jax's own seed).

    Example:
        >>> variables = seeded_variables("omniglot-fc", 5, seed=0)
        >>> variables["params"]["classifier"]["kernel"].shape
        (64, 5)
    """
    from ._registry import model_spec

    spec = model_spec(model)
    try:
        from .backends.torch.training import build_model
    except ImportError:  # torch is not installed (or cannot be imported): no shared start
        return None
    torch_model = build_model(spec, output_size, seed)
    return torch_to_flax(torch_model, flax_module, input_shape=(2, *spec.input_shape))
