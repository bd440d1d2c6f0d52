"""Checkpoints that cannot run code: a zip of ``.npy`` arrays plus a JSON description of the tree.

A checkpoint is a nested structure of dicts (any keys of the kinds below), lists, tuples
(NamedTuples are stored as tuples: a learner restores them from its own live tree, never from a
class named in the file), ``None``, bools, ints, floats, strings, bytes, numpy arrays and scalars,
torch tensors (restored on the CPU) and jax arrays (restored as numpy arrays). Arrays go into
``.npy`` members read with ``allow_pickle=False``; everything else into ``structure.json``. Loading
therefore never unpickles and never imports a module named in the file.
"""

from __future__ import annotations

import base64
import io
import json
import math
import sys
import zipfile
from typing import Any

import numpy as np

FORMAT, VERSION = "l2l_multi-checkpoint", 1
_STRUCTURE = "structure.json"


def _torch_tensor_type():
    torch = sys.modules.get("torch")  # the core never imports torch; a tensor implies it is loaded
    return None if torch is None else torch.Tensor


def _jax_array_type():
    jax = sys.modules.get("jax")
    return None if jax is None else jax.Array


class _Encoder:
    def __init__(self):
        self.arrays: list[np.ndarray] = []

    def array(self, value: np.ndarray, where: str) -> str:
        if value.dtype.hasobject:
            raise TypeError(f"checkpoint{where}: arrays of Python objects cannot be stored (dtype object)")
        # (np.ascontiguousarray would turn a 0-d array into shape [1])
        self.arrays.append(value if value.flags.c_contiguous else value.copy(order="C"))
        return f"{len(self.arrays) - 1}.npy"

    def encode(self, value: Any, where: str = "") -> Any:
        tensor, jax_array = _torch_tensor_type(), _jax_array_type()
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"t": "float", "v": repr(value)}
        if isinstance(value, bytes):
            return {"t": "bytes", "v": base64.b64encode(value).decode("ascii")}
        if isinstance(value, np.ndarray):
            return {"t": "ndarray", "ref": self.array(value, where)}
        if isinstance(value, np.generic):
            return {"t": "npscalar", "ref": self.array(np.asarray(value), where)}
        if tensor is not None and isinstance(value, tensor):
            detached = value.detach().cpu()
            if str(detached.dtype) == "torch.bfloat16":
                raise TypeError(f"checkpoint{where}: bfloat16 tensors have no numpy dtype; convert first")
            return {"t": "torch", "ref": self.array(detached.numpy(), where)}
        if jax_array is not None and isinstance(value, jax_array):
            return {"t": "ndarray", "ref": self.array(np.asarray(value), where)}
        if isinstance(value, dict):
            if all(isinstance(key, str) for key in value):
                return {"t": "dict", "v": {k: self.encode(v, f"{where}[{k!r}]") for k, v in value.items()}}
            return {
                "t": "map",
                "v": [[self.encode(k, where), self.encode(v, f"{where}[{k!r}]")] for k, v in value.items()],
            }
        if isinstance(value, tuple):  # NamedTuples included: their type is not stored
            return {"t": "tuple", "v": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        raise TypeError(
            f"checkpoint{where}: a {type(value).__module__}.{type(value).__qualname__} cannot be stored; "
            "use dicts, lists, tuples, numbers, strings, bytes, numpy arrays or torch/jax arrays"
        )


def dumps(state: Any) -> bytes:
    """The checkpoint file's bytes for ``state`` (see the module docstring for what it may hold).

    Example:
        >>> state = {"iteration": 3, "weights": np.arange(4.0), 7: (1, None)}
        >>> restored = loads(dumps(state))
        >>> restored["iteration"], restored["weights"].tolist(), restored[7]
        (3, [0.0, 1.0, 2.0, 3.0], (1, None))
    """
    encoder = _Encoder()
    tree = encoder.encode(state)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        header = {"format": FORMAT, "version": VERSION, "tree": tree}
        archive.writestr(_STRUCTURE, json.dumps(header, allow_nan=False))
        for index, array in enumerate(encoder.arrays):
            with archive.open(f"{index}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return buffer.getvalue()


class _Decoder:
    def __init__(self, archive: zipfile.ZipFile):
        self.archive = archive

    def array(self, node: dict) -> np.ndarray:
        name = node.get("ref")
        if not isinstance(name, str) or not name.endswith(".npy"):
            raise ValueError(f"an array reference {name!r} is not a member name")
        with self.archive.open(name) as member:  # KeyError when the member is missing
            return np.lib.format.read_array(member, allow_pickle=False)

    def decode(self, node: Any) -> Any:
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            return [self.decode(v) for v in node]
        if not isinstance(node, dict) or not isinstance(node.get("t"), str):
            raise ValueError(f"unexpected node {str(node)[:80]!r}")
        kind, value = node["t"], node.get("v")
        if kind == "dict" and isinstance(value, dict):
            return {k: self.decode(v) for k, v in value.items()}
        if kind == "map" and isinstance(value, list):
            if not all(isinstance(pair, list) and len(pair) == 2 for pair in value):
                raise ValueError("a map's items are not [key, value] pairs")
            return {self.decode(k): self.decode(v) for k, v in value}
        if kind == "tuple" and isinstance(value, list):
            return tuple(self.decode(v) for v in value)
        if kind == "float" and value in ("nan", "inf", "-inf"):
            return float(value)
        if kind == "bytes" and isinstance(value, str):
            return base64.b64decode(value.encode("ascii"), validate=True)
        if kind == "ndarray":
            return self.array(node)
        if kind == "npscalar":
            array = self.array(node)
            if array.ndim != 0:
                raise ValueError("a numpy scalar is stored with a shape")
            return array[()]
        if kind == "torch":
            import torch  # only a torch checkpoint gets here

            return torch.from_numpy(self.array(node))
        raise ValueError(f"unknown node type {kind!r}")


def loads(data: bytes) -> Any:
    """The state stored by :func:`dumps`. Raises ``ValueError`` (or ``zipfile.BadZipFile``,
    ``KeyError``) for anything that is not such a file; never unpickles, never imports a name read
    from the file (only torch, for a checkpoint holding torch tensors)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        header = json.loads(archive.read(_STRUCTURE))
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ValueError(f"{_STRUCTURE} does not describe an {FORMAT} file")
        if header.get("version") != VERSION:
            raise ValueError(f"format version {header.get('version')!r}; this library reads {VERSION}")
        return _Decoder(archive).decode(header["tree"])
