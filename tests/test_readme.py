"""README.md says only what runs. The rules:

- Every ```python block runs as printed, each in a fresh interpreter (OMP_NUM_THREADS=1, a
  temporary working folder), with one substitution: the data root ``path/to/omniglot`` becomes the
  test data's Omniglot folder (tests/_helpers.py, L2L_MULTI_TEST_DATA). A block that needs an
  absent framework or the absent data is skipped; any other error fails.
- Every line of a ```bash block is a command that is checked. The two set-up commands (after the
  ``<!-- main-command -->`` and ``<!-- test-command -->`` markers) are run by .ci/run and
  tests/test_examples.py, not here. A ``python script.py ...`` or ``python -m module ...`` line
  (after any ``NAME=value`` settings; for ``torchrun``, its script and the script's flags) is
  parsed, not run (training takes hours): the script runs with the printed flags (the data root
  substituted) up to its argument parser, and argparse must accept every flag. A resume line
  (``--resume``) must name the ``--out`` folder of a command printed before it. Other programs
  (pip, mkdocs) must be listed in ``OTHER_COMMANDS`` with the test that covers them.
- The examples section's claim about ``--backend`` holds: the scripts it names as one-backend
  refuse ``--backend``, every other example script accepts ``--backend jax``.
- The capability table (algorithm x backend) matches both backends' namespaces and the registry,
  and lists every algorithm class either backend exports.
- LICENSE, CITATION.cff and the Python versions agree with pyproject.toml.
"""

import importlib
import inspect
import itertools
import json
import re
import shlex
import tomllib
from concurrent.futures import ThreadPoolExecutor

import pytest
from _helpers import HAVE_JAX, HAVE_TORCH, OMNIGLOT_ROOT, REPO_ROOT, run_python

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
PLACEHOLDER = "path/to/omniglot"
HAVE_OMNIGLOT = (OMNIGLOT_ROOT / "images_background.zip").is_file()
# programs other than python that README bash blocks may show, and what checks them
OTHER_COMMANDS = {
    "pip": "the set-up commands (.ci/run) install the same extras from the same constraints",
    "mkdocs": "tests/test_docs.py builds the site with --strict",
}


def _line_number(offset: int) -> int:
    return README.count("\n", 0, offset) + 1


def _blocks(language: str) -> list[tuple[int, str, str]]:
    """(line of the opening fence, the text before the fence's line, the block's text)."""
    pattern = re.compile(rf"^```{language}\n(.*?)^```$", re.S | re.M)
    return [(_line_number(m.start()), README[: m.start()], m.group(1)) for m in pattern.finditer(README)]


PYTHON_BLOCKS = _blocks("python")


def _needs(code: str) -> list[str]:
    needs = []
    if re.search(r"^\s*import torch|use_backend\(\"torch\"\)|set_backend\(\"torch\"\)", code, re.M):
        needs.append("torch")
    if re.search(r"import (jax|optax|flax)|use_backend\(\"jax\"\)|set_backend\(\"jax\"\)", code):
        needs.append("jax")
    return needs


def _skip_reason(code: str) -> str | None:
    available = {"torch": HAVE_TORCH, "jax": HAVE_JAX}
    missing = [framework for framework in _needs(code) if not available[framework]]
    if missing:
        return f"needs {', '.join(missing)}"
    if PLACEHOLDER in code and not HAVE_OMNIGLOT:
        return f"needs Omniglot in {OMNIGLOT_ROOT}"
    return None


@pytest.fixture(scope="module")
def block_results(tmp_path_factory):
    """Every runnable block's CompletedProcess by README line, two interpreters at a time (each
    single-threaded, so a 2-core machine runs the blocks in about half the time)."""
    runnable = {line: code for line, _, code in PYTHON_BLOCKS if _skip_reason(code) is None}

    def run(line):
        folder = tmp_path_factory.mktemp(f"line{line}")
        code = runnable[line].replace(PLACEHOLDER, str(OMNIGLOT_ROOT))
        return run_python(code, env={"OMP_NUM_THREADS": "1"}, cwd=folder)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(runnable, pool.map(run, runnable)))


@pytest.mark.parametrize(
    "line, code",
    [(line, code) for line, _, code in PYTHON_BLOCKS],
    ids=[f"line{line}" for line, _, _ in PYTHON_BLOCKS],
)
def test_python_block_runs_as_printed(line, code, block_results):
    reason = _skip_reason(code)
    if reason:
        pytest.skip(f"the block at README.md:{line} {reason}")
    result = block_results[line]
    assert result.returncode == 0, f"README.md:{line}\n{code}\n{result.stdout}\n{result.stderr}"


def _bash_commands() -> list[tuple[int, list[str]]]:
    """(README line, words) of every bash command outside the set-up blocks."""
    commands = []
    for line, before, block in _blocks("bash"):
        if before.rstrip().endswith(("<!-- main-command -->", "<!-- test-command -->")):
            continue
        for number, text in enumerate(block.splitlines()):
            text = re.split(r"\s#", text, maxsplit=1)[0].strip()
            if text:
                words = shlex.split(text.replace(PLACEHOLDER, str(OMNIGLOT_ROOT)))
                commands.append((line + 1 + number, words))
    return commands


# Runs each argv up to its first successful ArgumentParser.parse_args and reports whether argparse
# accepted it; stderr (argparse's message) is captured per command. One interpreter for all.
_PARSE_DRIVER = r"""
import argparse, contextlib, io, json, os, runpy, sys

class Parsed(Exception):
    pass

original = argparse.ArgumentParser.parse_args

def parse_args(self, args=None, namespace=None):
    original(self, args, namespace)
    raise Parsed

argparse.ArgumentParser.parse_args = parse_args
report = []
for argv in json.loads(sys.argv[1]):
    errors = io.StringIO()
    saved_path = list(sys.path)
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            if argv[0] == "-m":
                sys.argv = [argv[1], *argv[2:]]
                runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
            else:
                sys.argv = list(argv)
                sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
                runpy.run_path(argv[0], run_name="__main__")
        report.append([False, "the script ended without parsing its arguments"])
    except Parsed:
        report.append([True, ""])
    except SystemExit as exit:
        report.append([False, f"exit {exit.code}: {errors.getvalue().strip().splitlines()[-1:]}"])
    except Exception as error:
        report.append([False, f"{type(error).__name__}: {error}; {errors.getvalue().strip()}"])
    finally:
        sys.path[:] = saved_path
print(json.dumps(report))
"""


def _parse(argvs: list[list[str]]) -> list[tuple[bool, str]]:
    result = run_python(
        _PARSE_DRIVER.replace("sys.argv[1]", repr(json.dumps(argvs))),
        env={"OMP_NUM_THREADS": "1"},
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _examples_section() -> str:
    return README.split("## Examples and reproductions", 1)[1].split("\n## ", 1)[0]


def _one_backend_scripts() -> list[str]:
    claim = re.search(r"run on one backend each: (.*?)\.\s+Each", _examples_section(), re.S)
    if claim is None:  # no sentence naming exceptions: every example must then take --backend jax
        return []
    return re.findall(r"\w+\.py", claim.group(1))


def test_bash_commands_parse_and_backend_claim_holds():
    commands = _bash_commands()
    assert commands, "no bash commands found"
    argvs, where, outs = [], [], set()
    for line, printed in commands:
        words = list(itertools.dropwhile(lambda word: re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", word), printed))
        program = words[0]
        if program in OTHER_COMMANDS:
            continue
        if program == "torchrun":  # its own options, then the script and the script's flags
            words = ["python", *itertools.dropwhile(lambda word: not word.endswith(".py"), words)]
        assert program in ("python", "torchrun"), (
            f"README.md:{line}: add {program!r} to OTHER_COMMANDS with its check"
        )
        if "--resume" in words:
            out = words[words.index("--out") + 1]
            assert out in outs, f"README.md:{line} resumes {out}, which no command above writes"
        if "--out" in words:
            outs.add(words[words.index("--out") + 1])
        argvs.append(words[1:])
        where.append(f"README.md:{line}: {shlex.join(printed)}")
        assert words[1] == "-m" or (REPO_ROOT / words[1]).is_file(), where[-1]
    # the --backend claim: one-backend scripts refuse the flag, the other examples take it
    one_backend = _one_backend_scripts()
    scripts = sorted(
        p
        for p in (REPO_ROOT / "examples").rglob("*.py")
        if not p.name.startswith("_") and p.name != "main_job.py"
    )
    assert set(one_backend) <= {p.name for p in scripts}, one_backend
    expected = [True] * len(argvs)
    for script in scripts:
        argvs.append([str(script.relative_to(REPO_ROOT)), "--quick", "--backend", "jax"])
        where.append(
            f"{script.name} --backend jax (README: "
            f"{'one backend' if script.name in one_backend else 'takes --backend'})"
        )
        expected.append(script.name not in one_backend)
    report = _parse(argvs)
    wrong = [
        f"{place}: {message or 'accepted'}"
        for place, (ok, message), want in zip(where, report, expected)
        if ok != want
    ]
    assert not wrong, "\n".join(wrong)


# -- the capability table -------------------------------------------------------------------------
BACKENDS = ["torch", "jax"]
# classes the backends export from l2l.algorithms that are not algorithms
NOT_ALGORITHMS = {
    "AdaptationError",
    "BaseLearner",
    "MetaBatchResult",
    "PerStepBatchNorm",
    "CheckedStepMetrics",
    "MetaStepMetrics",
}
_NAME = re.compile(r"^([\w.]+)(?:\((.*)\))?$")


def _table() -> list[dict[str, str]]:
    section = README.split("## Algorithms on each backend", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == ["method", "torch", "jax", "registry"], header
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]


def _names(cell: str) -> list[tuple[str, list[str]]]:
    """`l2l.algorithms.MAML(first_order=True)` + `...` -> [("l2l.algorithms.MAML", ["first_order"])]."""
    names = []
    for text in re.findall(r"`([^`]+)`", cell):
        match = _NAME.match(text)
        assert match, f"not a name: {text!r}"
        keywords = re.findall(r"(\w+)=", match.group(2) or "")
        names.append((match.group(1), keywords))
    return names


def _resolve(dotted: str, backend: str):
    """The object a table name means on ``backend``; AttributeError/ImportError when absent."""
    import l2l_multi

    if dotted.startswith("l2l."):
        with l2l_multi.use_backend(backend):
            value = l2l_multi
            for part in dotted.split(".")[1:]:
                value = getattr(value, part)
            return value
    if dotted.startswith("l2l_multi.backends.") and dotted.split(".")[2] != backend:
        dotted = ".".join(["l2l_multi", "backends", backend, *dotted.split(".")[3:]])
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.skipif(not (HAVE_TORCH and HAVE_JAX), reason="the table covers both backends")
@pytest.mark.parametrize("backend", BACKENDS)
def test_capability_table_matches_the_backend(backend):
    rows = _table()
    listed = set()
    for row in rows:
        cell, other = row[backend], row[BACKENDS[1 - BACKENDS.index(backend)]]
        if cell == "—":
            for dotted, _ in _names(other):
                with pytest.raises((AttributeError, ImportError)):
                    _resolve(dotted, backend)
            continue
        for dotted, keywords in _names(cell):
            value = _resolve(dotted, backend)
            listed.add(dotted.rsplit(".", 1)[-1])
            parameters = inspect.signature(value).parameters
            missing = [k for k in keywords if k not in parameters]
            assert not missing, f"{row['method']}: {dotted} on {backend} takes no {missing}"
    module = importlib.import_module(f"l2l_multi.backends.{backend}.algorithms")
    algorithms = {
        name
        for name in module.__all__
        if inspect.isclass(getattr(module, name)) and name not in NOT_ALGORITHMS
    }
    assert algorithms <= listed, f"algorithms of {backend} missing from the table: {algorithms - listed}"
    # meta-RL steps: every *_step function of the torch rl package and make_*_step of jax's gym
    rl = (
        importlib.import_module("l2l_multi.backends.torch.rl")
        if backend == "torch"
        else importlib.import_module("l2l_multi.backends.jax.gym")
    )
    steps = {
        name
        for name, value in vars(rl).items()
        if inspect.isfunction(value) and re.fullmatch(r"(make_)?\w+_step", name)
    }
    assert steps <= listed, f"meta-RL steps of {backend} missing from the table: {steps - listed}"


def test_capability_table_matches_the_registry():
    import l2l_multi
    from l2l_multi._registry import ALGORITHM_SPECS

    learner_parameters = set(inspect.signature(l2l_multi.MetaLearner).parameters)
    named = set()
    for row in _table():
        if row["registry"] == "—":
            continue
        tokens = re.findall(r"`([^`]+)`", row["registry"])
        assert tokens[0] in ALGORITHM_SPECS, f"{row['method']}: {tokens[0]!r} is not registered"
        named.add(tokens[0])
        for token in tokens[1:]:
            key = token.split("=", 1)[0]
            assert key in learner_parameters | set(ALGORITHM_SPECS[tokens[0]].options), (row["method"], token)
    assert named == set(ALGORITHM_SPECS), f"registered but not in the table: {set(ALGORITHM_SPECS) - named}"


# -- project files ---------------------------------------------------------------------------------
def _pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_license_is_mit_and_packaged():
    project = _pyproject()["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]  # setuptools puts it in the sdist and the wheel
    text = (REPO_ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "l2l_multi" in text
    assert "MIT" in README.split("## Licence", 1)[1]


def test_citation_file_is_valid_cff():
    yaml = pytest.importorskip("yaml")
    citation = yaml.safe_load((REPO_ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    # the keys CFF 1.2.0 requires, and those of each reference
    assert citation["cff-version"] == "1.2.0"
    assert {"message", "title", "authors"} <= set(citation)
    assert citation["title"] == "l2l_multi" and citation["version"] == _pyproject()["project"]["version"]
    assert citation["license"] == "MIT"
    for reference in citation["references"]:
        assert {"type", "title", "authors"} <= set(reference), reference
        assert all(set(author) & {"family-names", "name"} for author in reference["authors"]), reference
        assert isinstance(reference.get("year"), int), reference["title"]
    titles = " ".join(reference["title"] for reference in citation["references"])
    for paper in (
        "learn2learn",
        "Model-Agnostic Meta-Learning",
        "Prototypical Networks",
        "Meta-SGD",
        "Feature Reuse",
        "First-Order Meta-Learning",
        "Differentiable Convex Optimization",
        "How to train your MAML",
        "ProMP",
        "Trust Region Policy Optimization",
    ):
        assert paper in titles, paper


def test_python_versions_agree():
    project = _pyproject()["project"]
    assert project["requires-python"] == ">=3.11"
    install = README.split("## Install", 1)[1].split("\n## ", 1)[0]
    assert "Python 3.11 or newer" in install
    versions = [
        c.rsplit(" ", 1)[-1]
        for c in project["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    assert versions == ["3.11", "3.12", "3.13"], versions


def test_changelog_follows_keep_a_changelog():
    text = (REPO_ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    versions = re.findall(r"^## \[([^\]]+)\]", text, re.M)
    assert versions[0] == "Unreleased" and _pyproject()["project"]["version"] in versions, versions
    assert re.search(r"^## \[0\.1\.0\] - \d{4}-\d{2}-\d{2}$", text, re.M)
