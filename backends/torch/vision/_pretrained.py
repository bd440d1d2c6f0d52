"""``get_pretrained_backbone``: learn2learn 0.2.0's pretrained few-shot backbones.

The URLs are learn2learn's (``learn2learn/vision/models/__init__.py``, Zenodo record 5651278).
learn2learn publishes no checksum for them, and none is recorded here: none could be obtained
(the machine this was written on has no internet access) and we do not invent one. What is
verified instead is the format: each file is a ``torch.save``d ``state_dict`` that must load
*strictly* into the backbone learn2learn builds for it (every key and every shape), so a
truncated, wrong or damaged file fails loudly. A download goes to a temporary file that is moved
into place only after it loads.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

import torch

from ._resnet import ResNet12Backbone
from ._wrn import WRN28Backbone

_ZENODO = "https://zenodo.org/record/5651278/files/"
# {dataset: {model: file}}; learn2learn's 'default' and 'supervised' specs name the same file.
_FILES = {
    "mini-imagenet": {"resnet12": "25u1gtp5.pth", "wrn28": "m8vz9plq.pth"},
    "tiered-imagenet": {"resnet12": "126od68s.pth", "wrn28": "2w8u50q4.pth"},
    "cifar-fs": {"cnn4": "2mbq7efr.pth"},
    "fc100": {"cnn4": "w02f5vab.pth"},
}
SPECS = ("default", "supervised")
BACKBONE_URLS = {
    dataset: {model: {spec: _ZENODO + name for spec in SPECS} for model, name in models.items()}
    for dataset, models in _FILES.items()
}


def _backbone(model: str) -> torch.nn.Module:
    # the architectures learn2learn 0.2.0 loads these files into
    if model == "cnn4":
        from .models import CNN4Backbone

        return CNN4Backbone(channels=3, max_pool=True, layout="learn2learn")
    if model == "resnet12":
        return ResNet12Backbone(avg_pool=False)
    return WRN28Backbone()


def _download(url: str, path: str) -> str:
    """Fetch ``url`` into a locked temporary file beside ``path``; return the temporary's path."""
    from ....data._files import remove_stale_temporaries, temporary_file
    from ....vision.datasets._download import _fetch

    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    remove_stale_temporaries(folder, f".{name}.*.part")
    handle, temporary = temporary_file(folder, name)
    try:
        with os.fdopen(handle, "w+b") as file:
            _fetch(url, file, progress=True)
        warnings.warn(f"{url} has no published checksum; it is verified by loading it strictly", stacklevel=3)
        return temporary
    except BaseException:
        os.unlink(temporary)
        raise


def _load_strictly(backbone: torch.nn.Module, path: str, model: str) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and format errors all mean "not a state_dict file"
        raise ValueError(
            f"{path} is not a torch-saved {model} state_dict ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a {model} state_dict")
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{path} does not match learn2learn's {model} backbone: {error}") from None


def get_pretrained_backbone(
    model: str, dataset: str, spec: str = "default", root: str = "~/data", download: bool = False
) -> torch.nn.Module:
    """A backbone with learn2learn's pretrained weights (learn2learn 0.2.0's signature and files).

    Args:
        model: ``"cnn4"`` (cifar-fs, fc100), ``"resnet12"`` or ``"wrn28"`` (mini-imagenet,
            tiered-imagenet).
        dataset: ``"mini-imagenet"``, ``"tiered-imagenet"``, ``"cifar-fs"`` or ``"fc100"``.
        spec: ``"default"`` or ``"supervised"`` (the same weights in learn2learn 0.2.0).
        root: data folder; the file is ``<root>/pretrained_models/<dataset>/<model>.pth``.
        download: fetch the file from learn2learn's URL if it is missing.

    Returns:
        The backbone in training mode, float32 on the CPU: ``CNN4Backbone(channels=3,
        max_pool=True, layout="learn2learn")`` (``[N, 3, 32, 32] -> [N, 256]``),
        ``ResNet12Backbone(avg_pool=False)`` or ``WRN28Backbone()`` (``[N, 3, 84, 84]``).

    Raises:
        ValueError: unknown ``model``/``dataset``/``spec``, or a file that does not load strictly.
        FileNotFoundError: the file is missing and ``download`` is False.

    Example:
        >>> import os, tempfile, torch
        >>> from l2l_multi.backends.torch.vision.models import CNN4Backbone
        >>> root = tempfile.mkdtemp()
        >>> os.makedirs(os.path.join(root, "pretrained_models", "fc100"))
        >>> weights = CNN4Backbone(channels=3, max_pool=True, layout="learn2learn").state_dict()
        >>> torch.save(weights, os.path.join(root, "pretrained_models", "fc100", "cnn4.pth"))
        >>> get_pretrained_backbone("cnn4", "fc100", root=root)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 256])
    """
    if dataset not in BACKBONE_URLS:
        raise ValueError(f"dataset={dataset!r} is not one of {sorted(BACKBONE_URLS)}")
    if model not in BACKBONE_URLS[dataset]:
        raise ValueError(
            f"model={model!r} has no pretrained weights for {dataset!r}; "
            f"available: {sorted(BACKBONE_URLS[dataset])}"
        )
    if spec not in SPECS:
        raise ValueError(f"spec={spec!r} is not one of {SPECS}")
    path = os.path.join(os.path.expanduser(root), "pretrained_models", dataset, f"{model}.pth")
    backbone = _backbone(model)
    if not os.path.exists(path):
        if not download:
            raise FileNotFoundError(
                f"{path} does not exist; pass download=True to fetch {BACKBONE_URLS[dataset][model][spec]}"
            )
        temporary = _download(BACKBONE_URLS[dataset][model][spec], path)
        try:
            _load_strictly(backbone, temporary, model)
        except BaseException:
            os.unlink(temporary)
            raise
        os.replace(temporary, path)
        return backbone
    _load_strictly(backbone, path, model)
    return backbone
