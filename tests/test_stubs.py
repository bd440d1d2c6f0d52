"""The type stubs (``l2l_multi/*.pyi``) agree with both backends, so they cannot rot.

A stub lists the names a backend-resolved namespace offers: first the names common to both
backends, then a ``# torch only`` and a ``# jax only`` section. For every stub:
- the names of each section exist on the backends it names, and each backend's public names
  (``__all__``) all appear in the stub, in the common section when both backends have them;
- every function, class constructor and method declared for a common name can be called as
  the stub says on both backends: positional parameters sit at the same position, keyword
  parameters exist by name, a default in the stub is a default on both, a parameter both
  backends name the same is in the stub, and a parameter a backend requires is in the stub.
  A signature of only ``*args, **kwargs`` declares a call that differs per backend (loosely typed).
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest
from _helpers import HAVE_JAX, HAVE_TORCH

pytestmark = pytest.mark.skipif(not (HAVE_TORCH and HAVE_JAX), reason="needs torch and jax")

import l2l_multi  # noqa: E402

PACKAGE = Path(l2l_multi.__file__).parent
BACKENDS = ("torch", "jax")
# stub file (relative to the package) -> the backend module it describes
STUBS = {
    "algorithms/__init__.pyi": "algorithms",
    "nn/__init__.pyi": "nn",
    "optim/__init__.pyi": "optim",
    "vision/models/__init__.pyi": "vision.models",
}
SECTION_MARKERS = {"# torch only": ("torch",), "# jax only": ("jax",)}
P = inspect.Parameter


def _sections(path: Path) -> dict[str, dict[str, ast.AST]]:
    """``{"common" | "torch" | "jax": {name: stub node}}`` for the public names of a stub.

    Private names (``_GradientBased``) and plain imports are helpers; ``from m import X as X`` is
    a re-export, as in every stub.
    """
    source = path.read_text()
    marks = [(0, "common")]
    for number, line in enumerate(source.splitlines(), start=1):
        if line.strip() in SECTION_MARKERS:
            marks.append((number, SECTION_MARKERS[line.strip()][0]))
    sections: dict[str, dict[str, ast.AST]] = {"common": {}, "torch": {}, "jax": {}}
    for node in ast.parse(source).body:
        section = [name for start, name in marks if start <= node.lineno][-1]
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names = [node.target.id]
        elif isinstance(node, ast.ImportFrom):
            names = [alias.asname for alias in node.names if alias.asname == alias.name]
        else:
            names = []
        sections[section].update({name: node for name in names if not name.startswith("_")})
    return sections


def _classes(path: Path) -> dict[str, ast.ClassDef]:
    return {node.name: node for node in ast.parse(path.read_text()).body if isinstance(node, ast.ClassDef)}


def _backend_module(backend: str, area: str):
    return importlib.import_module(f"l2l_multi.backends.{backend}.{area}")


def _public(module) -> set[str]:
    """``__all__``, or the public names the module defines itself."""
    if hasattr(module, "__all__"):
        return set(module.__all__)
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == module.__name__
    }


def _stub_parameters(function: ast.FunctionDef) -> list[tuple[str, object, bool]]:
    """``[(name, kind, has_default)]`` of a stub function, ``self`` left out."""
    args = function.args
    positional = [(a, P.POSITIONAL_ONLY) for a in args.posonlyargs] + [
        (a, P.POSITIONAL_OR_KEYWORD) for a in args.args
    ]
    defaults = [False] * (len(positional) - len(args.defaults)) + [True] * len(args.defaults)
    result = [(a.arg, kind, d) for (a, kind), d in zip(positional, defaults)]
    if args.vararg:
        result.append((args.vararg.arg, P.VAR_POSITIONAL, False))
    result += [(a.arg, P.KEYWORD_ONLY, d is not None) for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    if args.kwarg:
        result.append((args.kwarg.arg, P.VAR_KEYWORD, False))
    return result[1:] if result and result[0][0] in ("self", "cls") else result


def _runtime_parameters(function) -> list[P]:
    parameters = list(inspect.signature(function).parameters.values())
    return parameters[1:] if parameters and parameters[0].name in ("self", "cls") else parameters


def _mismatches(stub: list, runtime: dict[str, list[P]]) -> list[str]:
    """What a call written against ``stub`` would get wrong on each backend (empty: nothing)."""
    kinds = {kind for _, kind, _ in stub}
    if kinds <= {P.VAR_POSITIONAL, P.VAR_KEYWORD} and len(kinds) == 2:
        return []  # declared as differing per backend
    problems = []
    named = {name for name, kind, _ in stub if kind not in (P.VAR_POSITIONAL, P.VAR_KEYWORD)}
    shared = set.intersection(
        *(
            {p.name for p in params if p.kind not in (P.VAR_POSITIONAL, P.VAR_KEYWORD, P.POSITIONAL_ONLY)}
            for params in runtime.values()
        )
    )
    positional_stub = [s for s in stub if s[1] in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
    extra_keywords, extra_positionals = [], []
    for missing in sorted(shared - named):
        problems.append(f"both backends take {missing!r}; the stub does not list it")
    for backend, params in runtime.items():
        by_name = {p.name: p for p in params}
        positional = [p for p in params if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
        has_varargs = any(p.kind == P.VAR_POSITIONAL for p in params)
        has_varkw = any(p.kind == P.VAR_KEYWORD for p in params)
        for index, (name, kind, default) in enumerate(positional_stub):
            if index >= len(positional):
                if not has_varargs:
                    problems.append(f"{backend}: takes no positional argument at {index} ({name!r})")
                continue
            target = positional[index]
            if kind == P.POSITIONAL_OR_KEYWORD and target.name != name:
                problems.append(f"{backend}: positional {index} is {target.name!r}, the stub says {name!r}")
            if default and target.default is P.empty:
                problems.append(f"{backend}: {target.name!r} has no default; the stub gives one")
        for name, kind, default in stub:
            if kind != P.KEYWORD_ONLY:
                continue
            target = by_name.get(name)
            if target is None or target.kind == P.POSITIONAL_ONLY:
                if not has_varkw:
                    problems.append(f"{backend}: has no keyword {name!r}")
            elif default and target.default is P.empty:
                problems.append(f"{backend}: {name!r} has no default; the stub gives one")
        covered = {name for name, _, _ in stub} | {
            positional[i].name for i in range(len(positional_stub)) if i < len(positional)
        }
        for p in params:
            required = p.default is P.empty and p.kind not in (P.VAR_POSITIONAL, P.VAR_KEYWORD)
            if required and p.name not in covered:
                problems.append(f"{backend}: requires {p.name!r}; the stub does not list it")
        extra_keywords.append(has_varkw or bool(set(by_name) - named))
        extra_positionals.append(has_varargs or len(positional) > len(positional_stub))
    if P.VAR_KEYWORD in kinds and not any(extra_keywords):
        problems.append("no backend takes other keywords; the stub's **kwargs hides typos")
    if P.VAR_POSITIONAL in kinds and not any(extra_positionals):
        problems.append("no backend takes other positional arguments; the stub's *args says they do")
    return problems


def _methods(node: ast.ClassDef, classes: dict[str, ast.ClassDef]) -> dict[str, ast.FunctionDef]:
    """The methods a stub class declares, with those of its bases in the same stub."""
    methods = {}
    for base in node.bases:
        if isinstance(base, ast.Name) and base.id in classes:
            methods.update(_methods(classes[base.id], classes))
    methods.update({item.name: item for item in node.body if isinstance(item, ast.FunctionDef)})
    return methods


def _callables(node: ast.AST, name: str, objects: dict[str, object], classes: dict[str, ast.ClassDef]):
    """``(label, stub function, {backend: runtime callable})`` for a stub def or class."""
    if isinstance(node, ast.FunctionDef):
        yield name, node, objects
    elif isinstance(node, ast.ClassDef):
        for method, item in _methods(node, classes).items():
            if method in ("__getattr__", "__call__"):  # loosely typed on purpose
                continue
            yield f"{name}.{method}", item, {b: getattr(obj, method) for b, obj in objects.items()}


CASES = [pytest.param(stub, area, id=stub) for stub, area in STUBS.items()]


@pytest.mark.parametrize("stub, area", CASES)
def test_stub_names_match_both_backends(stub, area):
    sections = _sections(PACKAGE / stub)
    modules = {b: _backend_module(b, area) for b in BACKENDS}
    for backend, module in modules.items():
        declared = set(sections["common"]) | set(sections[backend])
        public = _public(module)
        assert not declared - public, (
            f"{stub} declares names the {backend} backend lacks: {declared - public}"
        )
        assert not public - declared, f"{stub} lacks {backend} names: {sorted(public - declared)}"
    both = _public(modules["torch"]) & _public(modules["jax"])
    misplaced = both - set(sections["common"])
    assert not misplaced, f"{stub}: names on both backends must be in the common section: {misplaced}"


@pytest.mark.parametrize("stub, area", CASES)
def test_stub_signatures_work_on_both_backends(stub, area):
    sections, classes = _sections(PACKAGE / stub), _classes(PACKAGE / stub)
    modules = {b: _backend_module(b, area) for b in BACKENDS}
    problems = []
    for name, node in sections["common"].items():
        objects = {b: getattr(m, name) for b, m in modules.items()}
        for label, function, runtime in _callables(node, name, objects, classes):
            try:
                signatures = {b: _runtime_parameters(obj) for b, obj in runtime.items()}
            except (TypeError, ValueError):  # a builtin without a signature: nothing to compare
                continue
            problems += [f"{label}: {p}" for p in _mismatches(_stub_parameters(function), signatures)]
    assert not problems, f"{stub} disagrees with the backends:\n" + "\n".join(problems)


def test_top_level_stub_lists_the_package():
    """``l2l_multi/__init__.pyi``: the package's ``__all__`` and the backend utilities."""
    sections = _sections(PACKAGE / "__init__.pyi")
    declared = set(sections["common"]) | set(sections["torch"]) | set(sections["jax"])
    assert set(l2l_multi.__all__) <= declared | {"__version__"}, set(l2l_multi.__all__) - declared
    utilities = set(l2l_multi._BACKEND_UTILITIES)
    for backend in BACKENDS:
        public = _public(_backend_module(backend, "utils"))
        assert set(sections[backend]) <= public
        expected = (public & utilities) - set(sections["common"])
        assert expected == set(sections[backend]), (backend, expected, set(sections[backend]))
    modules = {b: _backend_module(b, "utils") for b in BACKENDS}
    both = _public(modules["torch"]) & _public(modules["jax"])
    assert (both & utilities) <= set(sections["common"])
    assert not declared - set(l2l_multi.__all__) - {"__version__"}
    problems = []
    for name in sorted(both & utilities):
        objects = {b: getattr(m, name) for b, m in modules.items()}
        for label, function, runtime in _callables(sections["common"][name], name, objects, {}):
            signatures = {b: _runtime_parameters(obj) for b, obj in runtime.items()}
            problems += [f"{label}: {p}" for p in _mismatches(_stub_parameters(function), signatures)]
    assert not problems, problems


def test_py_typed_is_shipped():
    assert (PACKAGE / "py.typed").is_file()
    pyproject = (PACKAGE.parent / "pyproject.toml").read_text()
    assert '"py.typed"' in pyproject and '"*.pyi"' in pyproject


@pytest.mark.parametrize(
    "stub, signatures, problem",
    [
        ("def f(x, y=1): ...", {"torch": "(x, y)", "jax": "(x, y=1)"}, "torch: 'y' has no default"),
        ("def f(x): ...", {"torch": "(x, steps=1)", "jax": "(x, steps=2)"}, "both backends take 'steps'"),
        ("def f(x, *, inner=None): ...", {"torch": "(x, inner=None)", "jax": "(x)"}, "jax: has no keyword"),
        ("def f(a, b): ...", {"torch": "(a, b)", "jax": "(b, a)"}, "jax: positional 0 is 'b'"),
        ("def f(a): ...", {"torch": "(a, b)", "jax": "(a, b=1)"}, "torch: requires 'b'"),
        ("def f(a, **kw): ...", {"torch": "(a)", "jax": "(a)"}, "hides typos"),
        ("def f(a, *args): ...", {"torch": "(a, *, b=1)", "jax": "(a)"}, "*args says they do"),
    ],
    ids=[
        "default",
        "missing-keyword",
        "foreign-keyword",
        "order",
        "required",
        "needless-kwargs",
        "needless-args",
    ],
)
def test_the_checker_finds_mismatches(stub, signatures, problem):
    """The signature check itself, on made-up signatures (it must be able to fail)."""
    function = ast.parse(stub).body[0]
    runtime = {}
    for backend, signature in signatures.items():
        namespace: dict = {}
        exec(f"def f{signature}: pass", namespace)
        runtime[backend] = _runtime_parameters(namespace["f"])
    assert any(problem in p for p in _mismatches(_stub_parameters(function), runtime)), problem
    good = {b: _runtime_parameters(eval("lambda x, y=1: 0")) for b in BACKENDS}
    assert _mismatches(_stub_parameters(ast.parse("def f(x, y=1): ...").body[0]), good) == []


def test_from_import_binds_the_backend_current_at_import():
    """What the README and ``l2l_multi._dispatch`` say about binding."""
    with l2l_multi.use_backend("torch"):
        from l2l_multi.algorithms import MAML as bound
    with l2l_multi.use_backend("jax"):
        assert bound.__module__.startswith("l2l_multi.backends.torch.")
        assert l2l_multi.algorithms.MAML.__module__.startswith("l2l_multi.backends.jax.")
        assert l2l_multi.optim.LearnableOptimizer.__module__.startswith("l2l_multi.backends.jax.")
