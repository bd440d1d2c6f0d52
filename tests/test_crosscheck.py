"""The torch <-> jax cross-check on the Omniglot conv4 (batch norm), 5-way 1-shot, meta-batch 8:
the meta-loss, every task's adapted parameters and the meta-gradients agree within 1e-5
(float32) and 1e-9 (float64)."""

import pytest

pytest.importorskip("torch")
jax = pytest.importorskip("jax")

from _helpers import run_python  # noqa: E402

from l2l_multi.crosscheck import crosscheck  # noqa: E402

CASES = [("maml", False, "maml"), ("maml", True, "maml-first-order"), ("metasgd", False, "metasgd")]
CASES += [("anil", False, "anil"), ("protonet", False, "protonet"), ("mamlpp", False, "mamlpp")]
# every algorithm in float64 (the tight check); float32 (the default dtype, 1e-5) for MAML by default
# and the others under `pytest -m long`: their float32 programs also run in the example tests
CONV4_RUNS = [
    pytest.param(
        algorithm,
        first_order,
        dtype,
        id=f"{name}-{dtype}",
        marks=[pytest.mark.long] if dtype == "float32" and name != "maml" else [],
    )
    for algorithm, first_order, name in CASES
    for dtype in ("float32", "float64")
]


@pytest.mark.slow
@pytest.mark.parametrize("algorithm, first_order, dtype", CONV4_RUNS)
def test_backends_agree_on_conv4(algorithm, first_order, dtype):
    report = crosscheck(
        algorithm, "omniglot-cnn", ways=5, shots=1, meta_batch=8, seed=0, first_order=first_order, dtype=dtype
    )
    assert report.passed, report
    if algorithm != "protonet":
        assert report.adapted_parameters is not None
    # the check is sensitive: float64 agreement is far below the float32 tolerance
    if dtype == "float64":
        assert report.meta_gradients < 1e-12


def test_command_line_reports_and_fails_above_tolerance(monkeypatch, capsys):
    ok = run_python(
        "import sys; from l2l_multi.crosscheck import main; sys.exit(main(['--model', 'omniglot-fc', "
        "'--ways', '3', '--meta-batch', '2', '--algorithm', 'metaoptnet']))"
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "meta-gradients" in ok.stdout and "PASS" in ok.stdout
    # a wrong inner learning rate on the jax side must be caught: patch one backend only (in this
    # process: the run above already went through the command line end to end; the learners made
    # by main trace their jax functions anew, so they see the patch)
    from l2l_multi.backends.jax.algorithms import _gradient_based as g

    from l2l_multi.crosscheck import main

    original = g._GradientBased.inner_step

    def scaled_inner_step(self, meta_params, params, grads, state):
        return original(self, meta_params, params, jax.tree_util.tree_map(lambda x: 1.001 * x, grads), state)

    monkeypatch.setattr(g._GradientBased, "inner_step", scaled_inner_step)
    capsys.readouterr()
    jax.numpy.zeros(1)  # jax's backend starts now, with this session's XLA_FLAGS; later values only
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")  # decide whether to hint
    assert main(["--model", "omniglot-fc", "--ways", "3", "--meta-batch", "2"]) == 1
    printed = capsys.readouterr()
    assert "FAIL" in printed.out, printed.out
    # a float32 failure on CPU names the XLA flag that gives XLA's own dots, unless it is set already
    assert "XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_dot" in printed.err
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=-individual_dot")
    from l2l_multi.crosscheck import _hint_cpu_dots

    _hint_cpu_dots()  # what main calls after a float32 failure
    assert "YNNPACK" not in capsys.readouterr().err


def test_a_registered_row_may_name_its_inner_optimizer(monkeypatch, capsys):
    """``--algorithm all`` runs every registered row; Reptile's carried-state row names its inner
    optimizer (momentum, whose velocity passes from task to task), which the command line's
    ``--inner`` would otherwise also give: the row's is used and printed once."""
    from l2l_multi import crosscheck as module

    row = ("reptile", {"inner": "momentum", "inner_state": "carried"})
    assert row in [(name, options) for name, options in module.crosscheck_rows()]
    monkeypatch.setattr(module, "crosscheck_rows", lambda: [row])
    argv = ["--algorithm", "all", "--model", "omniglot-fc", "--ways", "3", "--meta-batch", "3"]
    assert module.main([*argv, "--dtype", "float64"]) == 0
    printed = capsys.readouterr().out
    assert "cross-check reptile, inner momentum, inner_state carried (" in printed and "PASS" in printed


def test_command_line_asks_for_xla_dots_before_jax_starts():
    """XLA_FLAGS gets the YNNPACK flag first (XLA ignores what follows a token that is no flag), and
    is left alone once jax has a backend (XLA read it then) or when it names YNNPACK fusions."""
    code = (
        "import os, sys; from l2l_multi.crosscheck import _use_xla_dots\n"
        "if sys.argv[-1] == 'started': import jax; jax.numpy.zeros(1)\n"
        "_use_xla_dots(); print(os.environ['XLA_FLAGS'])"
    )
    flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    fresh = run_python(code, env={"XLA_FLAGS": flags})
    assert fresh.stdout.strip() == f"--xla_cpu_experimental_ynn_fusion_type=-individual_dot {flags}", (
        fresh.stderr
    )
    started = run_python(code.replace("sys.argv[-1] == 'started'", "True"), env={"XLA_FLAGS": flags})
    assert started.stdout.strip() == flags, started.stderr
    chosen = "--xla_cpu_experimental_ynn_fusion_type=-reduce"
    assert run_python(code, env={"XLA_FLAGS": chosen}).stdout.strip() == chosen


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"algorithm='maml\+\+' is not one of"):
        crosscheck("maml++")
    with pytest.raises(ValueError, match="dtype='float16' is not one of"):
        crosscheck("maml", dtype="float16")
    with pytest.raises(ValueError, match="shots=0 must be a positive integer"):
        crosscheck("maml", shots=0)  # partition_task allows it (learn2learn); a meta-gradient does not
    with pytest.raises(ValueError, match="meta_batch=1.5 must be a positive integer"):
        crosscheck("maml", meta_batch=1.5)


@pytest.mark.parametrize(
    "algorithm, inner", [("maml", "adam"), ("metasgd", "momentum")], ids=["maml-adam", "metasgd-momentum"]
)
def test_inner_optimizers_agree_across_backends(algorithm, inner):
    """torch runs l2l_multi.transforms, jax optax's implementation; 3 steps thread the state."""
    # Adam at optax's own eps=1e-8: this model has no elements whose gradient is rounding noise
    extra = {"adam_eps": 1e-8} if inner == "adam" else {}
    report = crosscheck(
        algorithm,
        "omniglot-fc",
        ways=3,
        meta_batch=2,
        dtype="float64",
        inner=inner,
        adaptation_steps=3,
        **extra,
    )
    assert report.passed, report
    assert report.adapted_parameters < 1e-10 and report.meta_gradients < 1e-9
    with pytest.raises(ValueError, match=r"algorithm \(with inner\)='protonet' is not one of"):
        crosscheck("protonet", inner=inner)


def test_adam_runs_at_the_dtype_eps_on_both_backends():
    """--inner adam builds Adam once per backend with the same eps (ADAM_EPS[dtype] by default)."""
    from l2l_multi.crosscheck import ADAM_EPS, _inner_optimizers

    report = crosscheck("maml", "omniglot-fc", ways=3, meta_batch=2, dtype="float32", inner="adam")
    assert report.passed, report
    inners = _inner_optimizers("adam", "maml", 1e-3, ADAM_EPS["float32"])
    assert set(inners) == {"torch", "jax"} and all("inner" in v for v in inners.values())
    with pytest.raises(ValueError, match=r"adam_eps=0 must be a float > 0"):
        crosscheck("maml", "omniglot-fc", inner="adam", adam_eps=0)


@pytest.mark.slow
def test_metaoptnet_svm_agrees_on_conv4_in_float32():
    """The SVM head's QP: torch solves it in float64 whatever the dtype, jax in float32 (an
    interior point iterate alone would be about 1e-4 off; the polished solution is not). float64
    agreement: the conformance test's metaoptnet-svm row and tests/test_jax_svm.py."""
    report = crosscheck(
        "metaoptnet", "omniglot-cnn", ways=5, shots=1, meta_batch=8, seed=0, dtype="float32", head="svm"
    )
    assert report.passed, report
    assert report.adapted_parameters is None  # no inner loop


def test_a_newly_registered_algorithm_is_cross_checked_without_crosscheck_changes():
    """crosscheck compares the learners' public trees only: an algorithm that exists just in the
    registry and the two backends' builder tables (here: MAML with a fixed first-order flag and
    Adam as its inner optimizer) is checked, and listed by --algorithm all."""
    import optax
    from l2l_multi.backends.jax import algorithms as jax_algorithms
    from l2l_multi.backends.jax import training as jax_training
    from l2l_multi.backends.torch import algorithms as torch_algorithms
    from l2l_multi.backends.torch import training as torch_training

    from l2l_multi import _registry
    from l2l_multi import crosscheck as module
    from l2l_multi import transforms as core_transforms

    name = "maml-adam-fo-test"
    spec = _registry.AlgorithmSpec(name, "gradient", (), ({},), "first-order MAML with Adam")

    def torch_builder(model, *, lr, first_order, inner, head):
        return torch_algorithms.MAML(model, first_order=True, inner=core_transforms.adam(lr, eps_root=1e-16))

    def jax_builder(model, variables, ways, *, lr, first_order, inner, head):
        algorithm = jax_algorithms.MAML(model, first_order=True, inner=optax.adam(lr, eps_root=1e-16))
        return algorithm, algorithm.from_variables(variables)

    def sgd_builder(model, variables, ways, *, lr, first_order, inner, head):
        algorithm = jax_algorithms.MAML(model, lr=lr, first_order=True)
        return algorithm, algorithm.from_variables(variables)

    _registry.register_algorithm(spec)
    torch_training.ALGORITHM_BUILDERS[name] = torch_builder
    jax_training.ALGORITHM_BUILDERS[name] = jax_builder
    try:
        assert (name, {}) in module.crosscheck_rows()
        report = crosscheck(
            name, "omniglot-fc", ways=3, meta_batch=2, dtype="float64", lr=1e-3, adaptation_steps=2
        )
        assert report.passed and report.adapted_parameters is not None, report
        # and a wrong builder on one side is caught: plain SGD on jax against Adam on torch
        jax_training.ALGORITHM_BUILDERS[name] = sgd_builder
        assert not crosscheck(
            name, "omniglot-fc", ways=3, meta_batch=2, dtype="float64", lr=1e-3, adaptation_steps=2
        ).passed
    finally:
        _registry._ALGORITHMS.pop(name)
        torch_training.ALGORITHM_BUILDERS.pop(name)
        jax_training.ALGORITHM_BUILDERS.pop(name)
