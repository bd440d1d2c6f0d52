"""Griffe extensions for the API reference (static analysis: neither torch nor jax is imported).

``BackendsUnderPackage``: setuptools installs the ``backends`` folder as ``l2l_multi.backends``
(a package-dir mapping), which static analysis cannot see from the source tree: without this
extension griffe finds no ``l2l_multi.backends`` at all, or a top-level ``backends`` whose
relative imports (``from ....transforms import sgd``) point outside the package. Loading the
folder with ``l2l_multi`` as its parent gives every object its real path, so cross-references
resolve.

``ExamplesAsCode``: the project's docstrings title their doctests "Example:" (equinox's
convention); griffe's Google parser knows only "Examples:" and would render the doctest as
prose, where an output such as ``[-0.2]`` reads as a broken Markdown link.

``FollowWraps``: a function defined as ``@functools.wraps(target)`` over ``*args, **kwargs`` (both
backends' ``meta_batch_loss`` check the old call form this way) is documented with its target's
signature and docstring, as ``inspect.signature`` and ``help`` show it at run time.
"""

from __future__ import annotations

import re
from pathlib import Path

import griffe

BACKENDS_INIT = Path(__file__).resolve().parents[2] / "backends" / "__init__.py"
SINGULAR_EXAMPLE_TITLE = re.compile(r"^(\s*)Example:$", re.MULTILINE)
WRAPS_CALL = re.compile(r"^(?:functools\.)?wraps\((\w+)\)$")


class ExamplesAsCode(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = SINGULAR_EXAMPLE_TITLE.sub(r"\1Examples:", obj.docstring.value)


class FollowWraps(griffe.Extension):
    def on_function_instance(self, *, func: griffe.Function, **kwargs) -> None:
        for decorator in func.decorators:
            match = WRAPS_CALL.match(str(decorator.value))
            target = func.parent.members.get(match.group(1)) if match else None
            if target is not None and target.is_function and target.docstring is not None:
                func.parameters = target.parameters
                func.returns = target.returns
                func.docstring = griffe.Docstring(
                    target.docstring.value, lineno=target.docstring.lineno, parent=func
                )


class BackendsUnderPackage(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs) -> None:
        if pkg.name != "l2l_multi" or "backends" in pkg.members:
            return
        # griffe has no public call to load a folder under a given parent; _load_module is the
        # one its own submodule walk uses (griffelib is pinned in constraints.txt).
        backends = loader._load_module("backends", BACKENDS_INIT, submodules=True, parent=pkg)
        pkg.set_member("backends", backends)
        loader.expand_exports(backends)
