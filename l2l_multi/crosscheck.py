"""Cross-check the torch and jax backends: same weights, same tasks, one meta-step each.

    python -m l2l_multi.crosscheck --algorithm maml --model omniglot-cnn --ways 5 --shots 1 \\
        --meta-batch 8 --seed 0 [--first-order] [--dtype float64] [--inner adam] [--steps 3]

The torch model is built from the seed and converted to jax (``l2l_multi.interop``); a seeded
task stream gives both backends the same batch. Each backend's ``l2l.MetaLearner`` runs one
meta-step's forward and backward; the report gives the largest relative difference (max |torch -
jax| over max |torch|) of the meta-loss, the adapted parameters of every task, and the
meta-gradients. Only public trees are compared: ``meta_gradients(..., layout="flax")`` and
``adapted_parameters(..., layout="flax")`` of each learner, so this module knows no backend's
internals, and every algorithm of ``l2l_multi._registry.ALGORITHM_SPECS`` is checked the same
way (``--algorithm all`` runs each with its registered option sets, e.g. MetaOptNet's heads).
The command exits with status 1 above the tolerance (1e-5 in float32, 1e-9 in float64).

``--inner {sgd,momentum,adam}`` (maml, metasgd, anil, reptile) adapts with that inner optimizer: on torch
``l2l_multi.transforms``' implementation, on jax optax's (``optax.sgd``, ``optax.adam`` with the
same ``eps_root``), so the check also compares the two implementations of the optimizer, its
state threaded through ``--steps`` inner steps (with one step, momentum is plain SGD: use
``--steps 3``, in float64 on the conv4 models: three SGD steps at lr 0.4 amplify float32 rounding,
torch's own float32 meta-gradient then lying 1.3e-4 from its float64 one and jax's 8.8e-6, so the
two backends differ by about 1e-4 in float32, above its tolerance). ``--lr`` defaults to 0.4, and
to 1e-3 for Adam (whose steps are about ``lr`` per element whatever the gradient's size).

Adam's conditioning sets its own ``eps``. Adam divides each gradient element by its own magnitude
plus ``eps``, so the derivative of a step is about ``lr / eps`` at elements whose gradient is zero
or tiny (the conv biases feeding batch norm are zero in exact arithmetic; many conv weights of the
Omniglot CNN are below 1e-6): the meta-gradient amplifies rounding noise by that gain. With
optax's ``eps=1e-8``, two correct implementations cannot agree to the tolerances: measured here
(``omniglot-cnn``, 5-way 1-shot, meta-batch 8, seed 0, lr 1e-3, one step) torch's own loop and
vmap paths differ by 3.8e-10 (float64) and 0.15 (float32) in the meta-gradients, against 3e-15
and 2.5e-6 with SGD. The cross-check therefore runs Adam at ``--adam-eps`` (default 1e-4 in
float64, 1e-1 in float32, where the loop and vmap paths differ by 3.6e-11 and 1.4e-6): the same
formula, bias correction and state, compared at a gain the dtype can resolve. A wrong formula
(``eps`` inside or outside the square root, a missing bias correction) still shows as an O(1)
difference. ``tests/test_inner_optimizers.py`` checks Adam at ``eps=1e-8`` against optax and
finite differences on models without such elements.

float64 is the strict check. In float32 a ReLU input that lies within rounding of zero can take
either side in two correct implementations (the function has a kink there), which moves that
task's gradient by O(1); with many query samples per class on random images this happens now and
then (the torch loop and torch's vmap path differ the same way).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from ._backend import installed
from ._learner_options import INNER_ALGORITHMS, INNER_OPTIMIZERS, MODELS, check_choice
from ._registry import ALGORITHM_SPECS, algorithm_spec, model_spec
from ._training import MetaLearner

TOLERANCES = {"float32": 1e-5, "float64": 1e-9}
# Adam's eps per dtype: the gain lr / eps that the dtype can resolve (see the module docstring)
ADAM_EPS = {"float32": 1e-1, "float64": 1e-4}


def crosscheck_algorithms() -> tuple[str, ...]:
    """Every registered algorithm (the registry may grow after import)."""
    return tuple(ALGORITHM_SPECS)


CROSSCHECK_ALGORITHMS = crosscheck_algorithms()  # as registered when this module was imported


class CrossCheckReport(NamedTuple):
    """Largest relative differences between the backends (``None`` where not applicable)."""

    meta_loss: float
    adapted_parameters: float | None
    meta_gradients: float
    tolerance: float

    @property
    def passed(self) -> bool:
        values = [v for v in (self.meta_loss, self.adapted_parameters, self.meta_gradients) if v is not None]
        return all(v <= self.tolerance for v in values)


def _task_batch(shape: tuple, ways: int, shots: int, queries: int, meta_batch: int, seed: int):
    from . import data

    classes = max(4 * ways, 20)
    dataset = data.MetaDataset(
        data.synthetic_classification(classes, shots + queries, shape=shape, seed=seed)
    )
    taskset = data.TaskDataset(
        dataset,
        [
            data.transforms.FusedNWaysKShots(dataset, n=ways, k=shots + queries),
            data.transforms.LoadData(dataset),
            data.transforms.RemapLabels(dataset),
        ],
        seed=seed,
        backend="numpy",
    )
    inputs, labels = taskset.sample_batch(meta_batch)
    (sx, sy), (qx, qy) = data.partition_task_batch(inputs, labels, shots=shots)
    return sx, sy, qx, qy


def _flat(tree: Any, path: tuple = ()) -> dict[tuple, np.ndarray]:
    if isinstance(tree, Mapping):
        return {p: v for key, value in tree.items() for p, v in _flat(value, (*path, key)).items()}
    if isinstance(tree, (list, tuple)):  # e.g. one adapted tree per task
        return {p: v for index, value in enumerate(tree) for p, v in _flat(value, (*path, index)).items()}
    return {path: np.asarray(tree, np.float64)}


def compare_trees(expected: Any, actual: Any) -> float:
    """Largest ``|actual - expected|`` over the largest ``|expected|``, leaf by leaf over
    ``expected``'s leaves (nested dicts of arrays). ``actual`` may hold more leaves only under a
    ``batch_stats`` collection (running statistics are state, not meta-parameters); any other
    leaf that one tree has and the other lacks, or a shape mismatch, raises ``ValueError``."""
    expected, actual = _flat(expected), _flat(actual)
    missing = sorted(set(expected) - set(actual))
    extra = sorted(p for p in set(actual) - set(expected) if "batch_stats" not in p)
    if missing or extra:
        raise ValueError(
            f"the trees differ in structure: only the first has {['/'.join(map(str, p)) for p in missing]}, "
            f"only the second {['/'.join(map(str, p)) for p in extra]}"
        )
    for path, value in expected.items():
        if value.shape != actual[path].shape:
            raise ValueError(f"{'/'.join(map(str, path))}: shapes {value.shape} and {actual[path].shape}")
    scale = max((float(np.abs(v).max()) for v in expected.values() if v.size), default=0.0)
    worst = max((float(np.abs(actual[p] - v).max()) for p, v in expected.items() if v.size), default=0.0)
    return worst / max(scale, 1e-30)


def crosscheck(
    algorithm: str = "maml",
    model: str = "omniglot-cnn",
    ways: int = 5,
    shots: int = 1,
    queries: int = 1,
    meta_batch: int = 8,
    seed: int = 0,
    first_order: bool = False,
    dtype: str = "float32",
    adaptation_steps: int = 1,
    lr: float | None = None,
    inner: str | None = None,
    adam_eps: float | None = None,
    **options: Any,
) -> CrossCheckReport:
    """Run one meta-step on both backends from the same weights and tasks; compare.

    Args:
        algorithm: a registered algorithm ("maml", "metasgd", "anil", "protonet", "metaoptnet",
            "reptile", ...).
        model: one of ``l2l_multi._registry.MODEL_SPECS``; ways/shots/queries: per task (queries
            per class); meta_batch: tasks; seed: weights and tasks; first_order: MAML family
            without second order; dtype: "float32" or "float64"; adaptation_steps, lr: the inner
            loop (``lr=None``: 0.4, or 1e-3 with Adam); inner: ``None`` (the algorithm's SGD
            step) or one of "sgd", "momentum", "adam" (at rate ``lr``; 1.0 for metasgd, whose
            learned rates, initialised to ``lr``, scale it), for maml, metasgd, anil.
        adam_eps: Adam's ``eps`` with ``inner="adam"`` (``None``: ``ADAM_EPS[dtype]``); both
            backends get the same value (torch ``l2l_multi.transforms.adam``, jax ``optax.adam``).
        options: algorithm options of ``MetaLearner`` (e.g. ``head="ridge"`` for metaoptnet).

    Returns:
        ``CrossCheckReport`` (``.passed`` compares with the dtype's tolerance).

    Example:
        >>> report = crosscheck("maml", "omniglot-fc", ways=3, meta_batch=2, dtype="float64")
        >>> report.passed, report.meta_loss < 1e-12
        (True, True)
    """
    require_both_frameworks()
    import jax

    spec = algorithm_spec(algorithm)
    shape = model_spec(model).input_shape
    check_choice("dtype", dtype, tuple(TOLERANCES))
    for name, value in (("ways", ways), ("shots", shots), ("queries", queries), ("meta_batch", meta_batch)):
        # partition_task accepts shots=0 (learn2learn's behaviour); a meta-gradient needs support data
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer")
    if inner is not None:
        check_choice("inner", inner, INNER_OPTIMIZERS)
        check_choice("algorithm (with inner)", algorithm, INNER_ALGORITHMS)
    if lr is None:
        lr = 1e-3 if inner == "adam" else 0.4
    inners = _inner_optimizers(inner, algorithm, lr, ADAM_EPS[dtype] if adam_eps is None else adam_eps)
    batch = _task_batch(shape, ways, shots, queries, meta_batch, seed)
    settings = dict(
        lr=lr,
        meta_lr=1e-3,
        adaptation_steps=adaptation_steps,
        first_order=first_order,
        seed=seed,
        dtype=dtype,
        **options,
    )
    x64 = jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()
    with x64:
        torch_learner, jax_learner = (
            MetaLearner(algorithm, model, ways, backend=name, **settings, **inners[name])
            for name in ("torch", "jax")
        )
        torch_loss, torch_grads = torch_learner.meta_gradients(*batch, layout="flax")
        jax_loss, jax_grads = jax_learner.meta_gradients(*batch, layout="flax")
        loss_difference = abs(jax_loss - torch_loss) / max(abs(torch_loss), 1e-30)
        gradient_difference = compare_trees(torch_grads, jax_grads)
        adapted_difference = None
        if spec.adapts:
            adapted_torch = torch_learner.adapted_parameters(*batch[:2], layout="flax")
            adapted_jax = jax_learner.adapted_parameters(*batch[:2], layout="flax")
            adapted_difference = compare_trees(adapted_torch, adapted_jax)
    return CrossCheckReport(loss_difference, adapted_difference, gradient_difference, TOLERANCES[dtype])


def require_both_frameworks() -> None:
    """Raise ``ImportError`` naming each framework the cross-check lacks and the extra that has it."""
    extras = {"torch": "torch", "jax": "jax", "flax": "jax", "optax": "jax"}
    missing = [package for package in extras if not installed(package)]
    if missing:
        needed = ",".join(sorted({extras[package] for package in missing}))
        raise ImportError(
            f"the cross-check runs both the torch and the jax backend; {', '.join(map(repr, missing))} "
            f"{'is' if len(missing) == 1 else 'are'} not installed; install with: "
            f"pip install 'l2l_multi[{needed}]'"
        )


def _inner_optimizers(inner: str | None, algorithm: str, lr: float, adam_eps: float) -> dict[str, dict]:
    """``{"torch": {"inner": ...}, "jax": {...}}``: a name for sgd and momentum (each backend
    builds it), Adam built here so both backends get ``adam_eps``."""
    if inner is None:
        return {"torch": {}, "jax": {}}
    if inner != "adam":
        return {"torch": {"inner": inner}, "jax": {"inner": inner}}
    if isinstance(adam_eps, bool) or not isinstance(adam_eps, (int, float)) or not adam_eps > 0:
        raise ValueError(f"adam_eps={adam_eps!r} must be a float > 0")
    import optax

    from . import transforms

    rate = 1.0 if algorithm == "metasgd" else lr  # as MetaLearner's named "adam"
    root = transforms.DEFAULT_EPS_ROOT
    return {
        "torch": {"inner": transforms.adam(rate, eps=adam_eps, eps_root=root)},
        "jax": {"inner": optax.adam(rate, eps=adam_eps, eps_root=root)},
    }


def crosscheck_rows() -> list[tuple[str, dict]]:
    """``(algorithm, options)`` for every registered algorithm and each of its cross-check
    option sets (``AlgorithmSpec.crosscheck``)."""
    return [(name, dict(options)) for name, spec in ALGORITHM_SPECS.items() for options in spec.crosscheck]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m l2l_multi.crosscheck", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--algorithm",
        default="maml",
        choices=(*crosscheck_algorithms(), "all"),
        help="a registered algorithm, or all of them with their registered options",
    )
    parser.add_argument("--model", default="omniglot-cnn", choices=MODELS)
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--queries", type=int, default=1, help="query samples per class")
    parser.add_argument("--meta-batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1, help="inner adaptation steps")
    parser.add_argument(
        "--lr", type=float, default=None, help="inner learning rate (0.4; 1e-3 with --inner adam)"
    )
    parser.add_argument("--first-order", action="store_true")
    parser.add_argument("--dtype", default="float32", choices=tuple(TOLERANCES))
    parser.add_argument(
        "--inner",
        default=None,
        choices=INNER_OPTIMIZERS,
        help="inner optimizer (maml, metasgd, anil): torch runs l2l_multi.transforms, jax optax",
    )
    parser.add_argument(
        "--adam-eps",
        type=float,
        default=None,
        help="Adam's eps with --inner adam (default 1e-4 in float64, 1e-1 in float32; see above)",
    )
    parser.add_argument("--head", default=None, help="MetaOptNet's head (ridge, svm)")
    args = parser.parse_args(argv)
    _use_xla_dots()
    try:
        require_both_frameworks()
    except ImportError as error:
        print(f"{parser.prog}: {error}", file=sys.stderr)
        return 2
    if args.algorithm == "all":
        rows = crosscheck_rows()
    else:
        rows = [(args.algorithm, {} if args.head is None else {"head": args.head})]
    failed = 0
    for algorithm, options in rows:
        options = dict(options)
        row_inner = options.pop("inner", None)  # a registered row may name its inner optimizer
        inner = row_inner if args.inner is None else args.inner
        shown = {"inner": row_inner, **options} if row_inner and args.inner is None else options
        report = crosscheck(
            algorithm,
            args.model,
            args.ways,
            args.shots,
            args.queries,
            args.meta_batch,
            args.seed,
            args.first_order,
            args.dtype,
            args.steps,
            args.lr,
            inner,
            args.adam_eps,
            **options,
        )
        _print_report(args, algorithm, shown, report)
        failed += not report.passed
    if failed and args.dtype == "float32":
        _hint_cpu_dots()
    return 1 if failed else 0


# On some CPUs (an Intel Xeon with AMX, measured) XLA hands float32 dots to YNNPACK, which sums long
# contractions in another order: the conv models' float32 meta-gradients then differ from float64 by
# about 1e-3 instead of 1e-6. The command line asks for XLA's own dots; first in XLA_FLAGS, as XLA
# ignores what follows a token that is no flag.
YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_dot"


def _use_xla_dots() -> None:
    """Puts ``YNN_FLAG`` first in ``XLA_FLAGS`` unless it names YNNPACK fusions already; only while
    jax has no backend yet (XLA reads the variable once, when the first one starts)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "ynn_fusion_type" in flags:
        return
    if "jax" in sys.modules:
        from jax._src import xla_bridge

        if xla_bridge.backends_are_initialized():
            return
    os.environ["XLA_FLAGS"] = f"{YNN_FLAG} {flags}".strip()


def _hint_cpu_dots() -> None:
    """After a float32 failure: names ``YNN_FLAG`` when jax's CPU backend started without it."""
    import jax

    if jax.default_backend() == "cpu" and "ynn_fusion_type" not in os.environ.get("XLA_FLAGS", ""):
        print(
            "note: on some CPUs XLA hands float32 dots to YNNPACK, which sums long contractions in "
            "another order; the conv models' meta-gradients then differ from float64 by about 1e-3. "
            f"Rerun with XLA_FLAGS={YNN_FLAG} (first in XLA_FLAGS), or with --dtype float64.",
            file=sys.stderr,
        )


def _print_report(args: argparse.Namespace, algorithm: str, options: dict, report: CrossCheckReport) -> None:
    kind = algorithm_spec(algorithm).kind
    order = {"metric": "no inner loop", "reptile": "first order by construction"}.get(
        kind, "first order" if args.first_order else "second order"
    )
    extras = "".join(f", {key} {value}" for key, value in options.items())
    print(
        f"cross-check {algorithm}{extras} ({order}{'' if kind == 'metric' else f', {args.steps} step(s)'}"
        f"{'' if args.inner is None else ', inner ' + args.inner}), {args.model}, {args.ways}-way "
        f"{args.shots}-shot, meta-batch {args.meta_batch}, seed {args.seed}, {args.dtype}"
    )
    rows = [
        ("meta-loss", report.meta_loss),
        ("adapted parameters", report.adapted_parameters),
        ("meta-gradients", report.meta_gradients),
    ]
    for name, value in rows:
        shown = "n/a (no inner loop)" if value is None else f"{value:.3e}"
        print(f"  largest relative difference, {name:<20} {shown}")
    verdict = "PASS" if report.passed else "FAIL"
    print(f"{verdict}: tolerance {report.tolerance:.0e}")


if __name__ == "__main__":
    sys.exit(main())
