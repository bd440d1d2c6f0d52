"""Wall time per MAML-TRPO iteration, torch vs jax, on the same settings.

One iteration is what ``examples/rl/maml_trpo.py`` does per meta-update: ``--meta-batch`` Particles2D tasks,
for each ``--episodes`` episodes of ``--horizon`` steps with the meta-policy, the linear baseline and GAE, one
DiCE adaptation step, as many episodes with the adapted policy, then the TRPO meta-update (conjugate gradient
on the KL Hessian through the adaptation, backtracking line search). Policy: 2x100 ReLU Gaussian, float32.

* torch: ``l2l_multi.backends.torch.rl.sample_meta_batch`` on a gymnasium ``SyncVectorEnv`` of
  ``Particles2DEnv`` (one env per episode, numpy dynamics) and ``maml_trpo_step``;
* jax: ``l2l_multi.backends.jax.rl.make_maml_trpo_step`` on the pure-jax ``Particles2D``: the whole iteration
  compiled (collection and update, vmapped over tasks); the first call's compile time is reported apart.

Iterations alternate between the backends (torch, jax, torch, ...) so that both see the same machine load;
medians (and min/max) in seconds, split into collection and update. One thread each by default.

    python benchmarks/rl_step.py --iterations 5 --out benchmarks/results/rl_step_issue17
"""

from __future__ import annotations

import os

# one thread per framework (must precede the imports of torch and jax)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

SETTINGS = {"meta_batch": 20, "episodes": 20, "horizon": 100, "hiddens": [100, 100], "lr": 0.1, "gamma": 0.99,
            "tau": 1.0, "max_kl": 0.01, "cg_iterations": 10, "cg_damping": 1e-5, "line_search_steps": 15}


def torch_runner(settings: dict, seed: int):
    """``run(iteration) -> (collect_s, update_s, pre, post)`` for the torch backend."""
    import gymnasium
    import numpy as np
    import torch
    from l2l_multi.backends.torch import rl
    from l2l_multi.backends.torch.algorithms import MAML

    from l2l_multi.gym import Particles2DEnv

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    env = gymnasium.vector.SyncVectorEnv([Particles2DEnv] * settings["episodes"])  # collect caps the steps
    sampler = Particles2DEnv()
    maml = MAML(rl.DiagNormalPolicy(2, 2, hiddens=settings["hiddens"]), lr=settings["lr"])
    baseline = rl.LinearValue(2)

    def run(iteration: int):
        tasks = sampler.sample_tasks(settings["meta_batch"], seed=np.random.default_rng([seed, iteration]))
        generator = torch.Generator().manual_seed(iteration)
        start = time.perf_counter()
        batches, pre, post = rl.sample_meta_batch(
            maml, env, tasks, baseline, settings["horizon"], settings["gamma"], settings["tau"],
            generator=generator, seed=iteration,
        )
        collected = time.perf_counter()
        rl.maml_trpo_step(
            maml, batches, max_kl=settings["max_kl"], cg_iterations=settings["cg_iterations"],
            cg_damping=settings["cg_damping"], line_search_steps=settings["line_search_steps"],
        )
        return collected - start, time.perf_counter() - collected, float(pre), float(post)

    return run


def jax_runner(settings: dict, seed: int):
    """``run(iteration) -> (collect_s, update_s, pre, post)`` for the jax backend (compiled on the first
    call): the two compiled programs of ``make_maml_trpo_step``, each waited for."""
    import jax
    from l2l_multi.backends.jax import rl
    from l2l_multi.backends.jax.gym import Particles2D

    options = {name: value for name, value in settings.items() if name != "hiddens"}
    step = rl.make_maml_trpo_step(Particles2D(), **options)
    state = {"policy": rl.DiagNormalPolicy(2, 2, hiddens=settings["hiddens"], key=jax.random.key(seed))}

    def run(iteration: int):
        start = time.perf_counter()
        batches, pre, post = jax.block_until_ready(step.collect(state["policy"], jax.random.key(iteration)))
        collected = time.perf_counter()
        state["policy"], _ = jax.block_until_ready(step.update(state["policy"], batches))
        return collected - start, time.perf_counter() - collected, float(pre), float(post)

    return run


def _summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5, help="timed iterations per backend")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="folder for results.json")
    for name, value in SETTINGS.items():
        if name != "hiddens":
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args(argv)
    if args.iterations < 1:
        raise SystemExit(f"--iterations must be >= 1, got {args.iterations}")
    settings = {name: getattr(args, name, value) for name, value in SETTINGS.items()}

    import jax
    import torch

    run_torch, run_jax = torch_runner(settings, args.seed), jax_runner(settings, args.seed)
    start = time.perf_counter()
    run_jax(0)  # compiles both programs
    compile_s = time.perf_counter() - start
    run_torch(0)  # warm-up (allocator, gymnasium)
    rows = {"torch": [], "jax": []}
    for iteration in range(1, args.iterations + 1):
        rows["torch"].append(run_torch(iteration))
        rows["jax"].append(run_jax(iteration))
        times = {name: sum(rows[name][-1][:2]) for name in rows}
        print(f"iteration {iteration}: torch {times['torch']:.3f} s, jax {times['jax']:.3f} s", flush=True)
    results = {"settings": settings}
    for name in rows:
        results[name] = {
            "iteration_s": _summary([collect + update for collect, update, _, _ in rows[name]]),
            "collect_s": _summary([row[0] for row in rows[name]]),
            "update_s": _summary([row[1] for row in rows[name]]),
            "pre_post_return_last": rows[name][-1][2:],
        }
    results["jax"]["first_call_with_compile_s"] = compile_s
    medians = [results[name]["iteration_s"]["median"] for name in ("torch", "jax")]
    results["speedup_median"] = medians[0] / medians[1]
    results.update({
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average_1_5_15": os.getloadavg(),
            "torch": torch.__version__,
            "jax": jax.__version__,
            "jax_device": str(jax.devices()[0]),
            "threads": {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "XLA_FLAGS")},
        },
    })
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
