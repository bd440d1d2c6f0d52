"""Wall time per MAML-TRPO iteration, torch vs jax, on the same settings.

One iteration is what ``examples/rl/maml_trpo.py`` does per meta-update: ``--meta-batch`` tasks of ``--env``,
for each ``--episodes`` episodes of ``--horizon`` steps with the meta-policy, the linear baseline and GAE, one
DiCE adaptation step, as many episodes with the adapted policy, then the TRPO meta-update (conjugate gradient
on the KL Hessian through the adaptation, backtracking line search). Policy: 2x100 ReLU Gaussian, float32.

``--env`` (both backends run the same task distribution, rewards and observations):

* ``Particles2D-v1`` (default). torch: ``l2l_multi.backends.torch.rl.sample_meta_batch`` on a gymnasium
  ``SyncVectorEnv`` of ``Particles2DEnv`` (one env per episode, numpy dynamics) and ``maml_trpo_step``;
  jax: ``l2l_multi.backends.jax.rl.make_maml_trpo_step`` on the pure-jax ``Particles2D``.
* ``HalfCheetahForwardBackward-v1``, ``AntForwardBackward-v1``. torch: the same loop on a ``SyncVectorEnv``
  of MuJoCo C environments, each ``gymnasium.make("l2l_multi.gym:<id>", max_episode_steps=horizon)`` behind
  ``ClipAction`` (``make_env`` of ``examples/rl/_torch_driver.py``); jax: ``make_maml_trpo_step`` on the
  MJX twin from ``l2l_multi.backends.jax.mjx_envs`` (the ``mjx`` extra), which clips actions itself.

``--env-kwargs`` (JSON) goes to both environments' constructors, e.g. learn2learn's control cost
``'{"ctrl_cost_weight": 0.05}'``. On jax the whole iteration is compiled (collection and update, vmapped
over tasks); the first call, compilation included, is reported apart from the timed iterations.

Iterations alternate between the backends (torch, jax, torch, ...) so that both see the same machine load;
medians (and min/max) in seconds, split into collection and update. One thread each by default.
results.json records the settings, the environment and its keyword arguments, the command, the device
and the thread settings.

    python benchmarks/rl_step.py --iterations 5 --out benchmarks/results/rl_step_issue17
    python benchmarks/rl_step.py --env HalfCheetahForwardBackward-v1 \\
        --env-kwargs '{"ctrl_cost_weight": 0.05}' --meta-batch 4 --episodes 4 \\
        --iterations 3 --out benchmarks/results/rl_step_halfcheetah_issue17
"""

from __future__ import annotations

import os

# one thread per framework (must precede the imports of torch and jax)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import argparse  # noqa: E402
import functools  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

SETTINGS = {
    "meta_batch": 20,
    "episodes": 20,
    "horizon": 100,
    "hiddens": [100, 100],
    "lr": 0.1,
    "gamma": 0.99,
    "tau": 1.0,
    "max_kl": 0.01,
    "cg_iterations": 10,
    "cg_damping": 1e-5,
    "line_search_steps": 15,
}
# gymnasium id -> (module, class) of its jax twin
ENVS = {
    "Particles2D-v1": ("l2l_multi.backends.jax.gym", "Particles2D"),
    "HalfCheetahForwardBackward-v1": ("l2l_multi.backends.jax.mjx_envs", "HalfCheetahForwardBackward"),
    "AntForwardBackward-v1": ("l2l_multi.backends.jax.mjx_envs", "AntForwardBackward"),
}
PARTICLES = "Particles2D-v1"
TORCH_DRIVER = Path(__file__).resolve().parent.parent / "examples" / "rl" / "_torch_driver.py"


def _torch_driver():
    """``examples/rl/_torch_driver.py`` as a module (its ``make_env`` builds the example's environments)."""
    spec = importlib.util.spec_from_file_location("_rl_step_torch_driver", TORCH_DRIVER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _env_error(env_name: str, env_kwargs: dict, backend: str, error: Exception) -> SystemExit:
    return SystemExit(
        f"--env-kwargs {json.dumps(env_kwargs)} does not suit --env {env_name} on {backend}: {error}"
    )


def torch_runner(settings: dict, seed: int, env_name: str = PARTICLES, env_kwargs: dict | None = None):
    """``run(iteration) -> (collect_s, update_s, pre, post)`` for the torch backend on ``env_name``."""
    import gymnasium
    import numpy as np
    import torch
    from l2l_multi.backends.torch import rl
    from l2l_multi.backends.torch.algorithms import MAML

    from l2l_multi.gym import Particles2DEnv

    env_kwargs = dict(env_kwargs or {})
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    if env_name == PARTICLES:  # numpy dynamics that clip actions themselves; collect caps the steps
        factory = functools.partial(Particles2DEnv, **env_kwargs)
    else:
        factory = functools.partial(_torch_driver().make_env, env_name, settings["horizon"], env_kwargs)
    try:  # draws the tasks; the vector env's copies run them
        sampler = factory().unwrapped
    except TypeError as error:  # an argument the constructor does not take
        raise _env_error(env_name, env_kwargs, "torch", error) from None
    env = gymnasium.vector.SyncVectorEnv([factory] * settings["episodes"])
    obs_size = int(np.prod(sampler.observation_space.shape))
    act_size = int(np.prod(sampler.action_space.shape))
    maml = MAML(rl.DiagNormalPolicy(obs_size, act_size, hiddens=settings["hiddens"]), lr=settings["lr"])
    baseline = rl.LinearValue(obs_size)

    def run(iteration: int):
        tasks = sampler.sample_tasks(settings["meta_batch"], seed=np.random.default_rng([seed, iteration]))
        generator = torch.Generator().manual_seed(iteration)
        start = time.perf_counter()
        batches, pre, post = rl.sample_meta_batch(
            maml,
            env,
            tasks,
            baseline,
            settings["horizon"],
            settings["gamma"],
            settings["tau"],
            generator=generator,
            seed=iteration,
        )
        collected = time.perf_counter()
        rl.maml_trpo_step(
            maml,
            batches,
            max_kl=settings["max_kl"],
            cg_iterations=settings["cg_iterations"],
            cg_damping=settings["cg_damping"],
            line_search_steps=settings["line_search_steps"],
        )
        return collected - start, time.perf_counter() - collected, float(pre), float(post)

    return run


def jax_runner(settings: dict, seed: int, env_name: str = PARTICLES, env_kwargs: dict | None = None):
    """``run(iteration) -> (collect_s, update_s, pre, post)`` for the jax backend on the twin of
    ``env_name`` (compiled on the first call): the two compiled programs of ``make_maml_trpo_step``,
    each waited for."""
    import jax
    from l2l_multi.backends.jax import rl

    env_kwargs = dict(env_kwargs or {})
    module_name, class_name = ENVS[env_name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:  # mujoco-mjx missing
        raise SystemExit(f"--env {env_name} on jax needs the mjx extra: {error}") from None
    try:
        env = getattr(module, class_name)(**env_kwargs)
    except (TypeError, ValueError) as error:
        raise _env_error(env_name, env_kwargs, "jax", error) from None
    options = {name: value for name, value in settings.items() if name != "hiddens"}
    step = rl.make_maml_trpo_step(env, **options)
    policy = rl.DiagNormalPolicy(
        env.observation_size, env.action_size, hiddens=settings["hiddens"], key=jax.random.key(seed)
    )
    state = {"policy": policy}

    def run(iteration: int):
        start = time.perf_counter()
        batches, pre, post = jax.block_until_ready(step.collect(state["policy"], jax.random.key(iteration)))
        collected = time.perf_counter()
        state["policy"], _ = jax.block_until_ready(step.update(state["policy"], batches))
        return collected - start, time.perf_counter() - collected, float(pre), float(post)

    return run


def _summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def _env_kwargs(text: str) -> dict:
    """``--env-kwargs``: a JSON object; ``SystemExit`` naming the flag for anything else."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise SystemExit(f"--env-kwargs must be a JSON object, got {text!r}: {error}") from None
    if not isinstance(value, dict):
        raise SystemExit(
            f"--env-kwargs must be a JSON object such as '{{\"ctrl_cost_weight\": 0.05}}', got {text!r}"
        )
    return value


def parse_args(argv=None) -> argparse.Namespace:
    """The command line (argv: list of str, default ``sys.argv[1:]``); ``SystemExit`` naming the flag for a
    bad value."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=PARTICLES, choices=list(ENVS), help="meta-environment id")
    parser.add_argument("--env-kwargs", default="{}", help="JSON object passed to both environments")
    parser.add_argument("--iterations", type=int, default=5, help="timed iterations per backend")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="folder for results.json")
    for name, value in SETTINGS.items():
        if name != "hiddens":
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args(argv)
    if args.iterations < 1:
        raise SystemExit(f"--iterations must be >= 1, got {args.iterations}")
    args.env_kwargs = _env_kwargs(args.env_kwargs)
    return args


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    settings = {name: getattr(args, name, value) for name, value in SETTINGS.items()}

    import jax
    import torch

    run_torch = torch_runner(settings, args.seed, args.env, args.env_kwargs)
    run_jax = jax_runner(settings, args.seed, args.env, args.env_kwargs)
    start = time.perf_counter()
    run_jax(0)  # compiles both programs
    compile_s = time.perf_counter() - start
    print(f"jax first call (compilation included): {compile_s:.1f} s", flush=True)
    run_torch(0)  # warm-up (allocator, gymnasium)
    rows = {"torch": [], "jax": []}
    for iteration in range(1, args.iterations + 1):
        rows["torch"].append(run_torch(iteration))
        rows["jax"].append(run_jax(iteration))
        times = {name: sum(rows[name][-1][:2]) for name in rows}
        print(f"iteration {iteration}: torch {times['torch']:.3f} s, jax {times['jax']:.3f} s", flush=True)
    jax_device = jax.devices()[0]
    results = {
        "env": args.env,
        "env_kwargs": args.env_kwargs,
        "settings": settings,
        "backend": "torch vs jax",
        # the example drivers' wording: "torch <version> cpu: <processor>, <n> threads", "jax <version> ..."
        "device": (
            f"{_torch_driver().torch_device_name()}; jax {jax.__version__} "
            f"{jax_device.platform}: {getattr(jax_device, 'device_kind', jax_device.platform)}"
        ),
        "command": shlex.join(["python", "benchmarks/rl_step.py", *argv]),
    }
    for name in rows:
        results[name] = {
            "iteration_s": _summary([collect + update for collect, update, _, _ in rows[name]]),
            "collect_s": _summary([row[0] for row in rows[name]]),
            "update_s": _summary([row[1] for row in rows[name]]),
            "pre_post_return_last": rows[name][-1][2:],
        }
    results["jax"]["first_call_with_compile_s"] = compile_s
    medians = [results[name]["iteration_s"]["median"] for name in ("torch", "jax")]
    # top-level numbers: the summary that benchmarks/reproductions.py lists under "Other runs"
    results.update({"torch_iteration_median_s": medians[0], "jax_iteration_median_s": medians[1]})
    results.update({"jax_first_call_with_compile_s": compile_s, "speedup_median": medians[0] / medians[1]})
    results.update(
        {
            "machine": {
                "platform": platform.platform(),
                "processor": platform.processor() or platform.machine(),
                "cpu_count": os.cpu_count(),
                "load_average_1_5_15": os.getloadavg(),
                "torch": torch.__version__,
                "jax": jax.__version__,
                "jax_device": str(jax_device),
                "threads": {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "XLA_FLAGS")},
                "torch_threads": torch.get_num_threads(),
            },
        }
    )
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
