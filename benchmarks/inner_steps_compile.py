"""Compile time of a jax MAML meta-step against the number of inner steps (lax.scan vs unrolled).

The jax learners run more than one inner step as one ``jax.lax.scan``, so the inner step is traced
and compiled once whatever the number of steps; before, the steps were an unrolled Python loop,
so the program (and its compile time) grew with the steps. This script times
``make_meta_train_step(maml, optax.adam(1e-3), adaptation_steps=k)`` from trace to executable
(``step.lower(...).compile()``) for each ``k`` in ``--steps``, for the library's ``MAML`` (scan)
and for an ``unrolled`` twin that overrides the inner loop with the previous Python loop (the
same arithmetic, checked: both give the same meta-loss). Model: the Omniglot conv4
(``OmniglotCNN``), 5-way 1-shot, 1 query per class, meta-batch ``--meta-batch``, random inputs.

    python benchmarks/inner_steps_compile.py                       # 1 and 10 steps, meta-batch 4
    python benchmarks/inner_steps_compile.py --steps 1 5 10 --inner adam
"""

import argparse
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from l2l_multi.backends.jax.algorithms import MAML, make_meta_train_step
from l2l_multi.backends.jax.algorithms._gradient_based import check_finite
from l2l_multi.backends.jax.algorithms._model import with_params
from l2l_multi.backends.jax.vision.models import OmniglotCNN

from l2l_multi import transforms

WAYS = 5


class UnrolledMAML(MAML):
    """MAML with the inner loop as a Python loop (the jax backend before ``lax.scan``)."""

    def _inner_loop(self, meta_params, variables, x, y, loss, steps, train):
        def support_loss(params):
            return loss(self.apply_model(with_params(variables, params), x, train), y)

        params = variables["params"]
        state = self.inner_init(meta_params, params)
        for _ in range(steps):
            value, grads = jax.value_and_grad(support_loss)(params)
            check_finite(value, "adapt: the support loss")
            params, state = self.inner_step(meta_params, params, grads, state)
        return with_params(variables, params)


def compile_seconds(algorithm, meta, batch, steps):
    """Seconds from tracing to an executable, and the compiled step's meta-loss on ``batch``."""
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(meta)
    step = make_meta_train_step(algorithm, optimizer, adaptation_steps=steps)
    jitted = getattr(step, "jitted", step)  # the jax.jit function behind a checking wrapper
    start = time.perf_counter()
    executable = jitted.lower(meta, opt_state, *batch).compile()
    seconds = time.perf_counter() - start
    _, _, metrics = executable(meta, opt_state, *batch)
    return seconds, float(metrics.loss)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 10], help="inner steps to time")
    parser.add_argument("--meta-batch", type=int, default=4)
    parser.add_argument("--inner", choices=("sgd", "adam"), default="sgd", help="sgd: lr 0.4; adam: 1e-2")
    parser.add_argument("--conv", choices=("auto", "xla", "matmul"), default="auto")
    parser.add_argument("--no-unrolled", action="store_true", help="time the scan version only")
    args = parser.parse_args(argv)
    if any(k < 1 for k in args.steps):
        parser.error(f"--steps {args.steps}: every entry must be >= 1")

    model = OmniglotCNN(WAYS, implementation=args.conv)
    rng = np.random.default_rng(0)
    sx = jnp.asarray(rng.random((args.meta_batch, WAYS, 1, 28, 28), dtype=np.float32))
    qx = jnp.asarray(rng.random((args.meta_batch, WAYS, 1, 28, 28), dtype=np.float32))
    labels = jnp.tile(jnp.arange(WAYS), (args.meta_batch, 1))
    batch = (sx, labels, qx, labels)
    options = {"lr": 0.4} if args.inner == "sgd" else {"inner": transforms.adam(1e-2)}
    kinds = [("lax.scan", MAML)] + ([] if args.no_unrolled else [("unrolled", UnrolledMAML)])

    machine = platform.processor() or platform.machine()
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform} ({machine}); "
        f"OmniglotCNN 5-way 1-shot, meta-batch {args.meta_batch}, inner {args.inner}, conv {args.conv}"
    )
    print("| inner loop | steps | compile s | vs 1 step | meta-loss |")
    print("|---|---:|---:|---:|---:|")
    losses = {}
    for name, cls in kinds:
        algorithm = cls(model, **options)
        meta = algorithm.init(jax.random.PRNGKey(0), sx[0])
        first = None
        for steps in args.steps:
            seconds, loss = compile_seconds(algorithm, meta, batch, steps)
            first = seconds if first is None else first
            losses.setdefault(steps, []).append(loss)
            print(f"| {name} | {steps} | {seconds:.2f} | {seconds / first:.2f}x | {loss:.6f} |")
    for steps, values in losses.items():
        if max(values) - min(values) > 1e-4 * max(1.0, abs(values[0])):
            raise SystemExit(f"the meta-losses of {steps} steps differ between the loops: {values}")


if __name__ == "__main__":
    main()
