"""The documentation site: ``mkdocs build --strict`` passes, and every Python block of docs/*.md runs.

The API reference is generated from the docstrings by static analysis (griffe), so a docstring
that griffe cannot read (an ``Args`` entry naming no parameter, a malformed section) fails the
build here. The Python blocks run as a reader would paste them (each in a fresh namespace, the
backend reset to the default before each), with ``path/to/omniglot`` replaced by the test data.
"""

import importlib.util
import os
import re
import subprocess
import sys

import pytest
from _helpers import OMNIGLOT_ROOT, REPO_ROOT

DOCS = REPO_ROOT / "docs"
PLACEHOLDER = "path/to/omniglot"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _python_blocks(needs_data: bool) -> list[tuple[str, int, str]]:
    blocks = []
    for page in sorted(DOCS.glob("*.md")):
        for number, match in enumerate(PYTHON_BLOCK.finditer(page.read_text()), 1):
            code = match.group(1)
            if (PLACEHOLDER in code) == needs_data:
                blocks.append((page.name, number, code.replace(PLACEHOLDER, str(OMNIGLOT_ROOT))))
    return blocks


# Runs the blocks in one interpreter (the frameworks are imported once), each in its own namespace.
RUNNER = """
import json, sys, traceback
import l2l_multi as l2l
for page, number, code in json.load(sys.stdin):
    l2l.set_backend("torch")
    try:
        exec(compile(code, f"{page} block {number}", "exec"), {"__name__": "__main__"})
    except BaseException:
        traceback.print_exc()
        sys.exit(f"docs/{page}: Python block {number} failed")
"""


# `mkdocs build --strict` as the command line runs it, then which frameworks the build imported.
# No --quiet: mkdocs 1.6 then drops the warnings that --strict counts, and a broken link passes.
BUILD = """
import runpy, sys
sys.argv = ["mkdocs", "build", "--strict", "--site-dir", sys.argv[1]]
try:
    runpy.run_module("mkdocs", run_name="__main__")
except SystemExit as exit:
    if exit.code:
        raise
print("frameworks imported:", *sorted({"torch", "jax", "flax"} & set(sys.modules)))
"""


def _run_blocks(blocks):
    import json

    env = {k: v for k, v in os.environ.items() if k != "L2L_BACKEND"}
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps(blocks),
        capture_output=True,
        text=True,
        env=env,
        cwd=DOCS,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]


@pytest.mark.slow
def test_docs_build_strict(tmp_path):
    for module in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (it comes with the test extra: pip install -e '.[test]')")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-c", BUILD, str(site)], capture_output=True, text=True, cwd=REPO_ROOT, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    assert result.stdout.split() == ["frameworks", "imported:"], result.stdout  # static analysis only
    # the griffe extensions did their work: backends under their installed name, wrapped functions
    algorithms = (site / "reference" / "algorithms" / "index.html").read_text()
    for anchor in (
        "l2l_multi.backends.torch.algorithms.MAML",
        "l2l_multi.backends.jax.algorithms.MAML",
        "l2l_multi.backends.torch.algorithms.meta_batch_loss",
        "l2l_multi.backends.jax.algorithms.meta_batch_loss",
    ):
        assert f'id="{anchor}"' in algorithms, anchor
    # doctests ("Example:" sections) render as highlighted code, not as prose with broken links
    assert algorithms.count('<span class="gp">&gt;&gt;&gt; </span>') > 20
    for page in ("getting-started", "porting", "jax"):
        assert (site / page / "index.html").is_file(), page


@pytest.mark.slow
def test_docs_python_blocks_run():
    for framework in ("torch", "jax", "flax", "optax"):
        pytest.importorskip(framework)
    blocks = _python_blocks(needs_data=False)
    assert len(blocks) >= 4, blocks  # the torch and jax MAML, porting, the jax contract
    _run_blocks(blocks)


@pytest.mark.slow
def test_docs_python_blocks_with_omniglot_run():
    pytest.importorskip("torch")
    if not os.path.isdir(str(OMNIGLOT_ROOT)):
        pytest.skip(f"no Omniglot data at {OMNIGLOT_ROOT} (set L2L_MULTI_TEST_DATA)")
    blocks = _python_blocks(needs_data=True)
    assert blocks, "no docs block reads path/to/omniglot"
    _run_blocks(blocks)
