"""Env-steps/s of l2l_multi.gym.AsyncVectorEnv against gymnasium's AsyncVectorEnv on HalfCheetah.

Usage: python benchmarks/env_steps.py [--workers 8] [--steps 300] [--repeats 15] [--json out.json]
Both use context="spawn", the same seeds and the same action sequence; repeats are interleaved, with the
order alternating, and medians reported, so drift on a shared machine hits both sides alike. The parent
process's CPU time per vector step is reported too: it is where a wrapper's overhead lives, and it is far
less noisy than throughput when 8 workers share 2 cores.

With ``--mjx`` (issue 17): gymnasium's AsyncVectorEnv (MuJoCo C, ``--workers`` processes) against the MJX
HalfCheetahForwardBackward vmapped over ``--tasks`` x ``--episodes`` environments (one jit of a
``lax.scan`` over ``--steps`` steps of the nested vmap, resets included), side by side in one run,
interleaved repeats, medians. The C side times 10 x ``--steps`` vector steps per repeat.
Usage: python benchmarks/env_steps.py --mjx [--workers 4] [--tasks 20] [--episodes 20] [--steps 20]
"""

import argparse
import functools
import json
import statistics
import time

import gymnasium
import gymnasium.vector
import numpy as np

import l2l_multi.gym as l2l_gym


def _measure(envs, actions):
    """``(env-steps per second, parent-process CPU microseconds per vector step)``."""
    envs.reset(seed=0)
    start, cpu_start = time.perf_counter(), time.process_time()
    for action in actions:
        envs.step(action)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return len(actions) * envs.num_envs / wall, cpu / len(actions) * 1e6


def _mjx_runner(tasks: int, episodes: int, steps: int):
    """``(run(seed) -> env-steps/s, compile seconds)``: MJX HalfCheetah, ``tasks x episodes`` envs."""
    import jax
    from l2l_multi.backends.jax.mjx_envs import HalfCheetahForwardBackward

    env = HalfCheetahForwardBackward()
    batched_reset = jax.vmap(jax.vmap(env.reset, in_axes=(0, None)), in_axes=(0, 0))  # tasks, then episodes
    batched_step = jax.vmap(jax.vmap(env.step))

    @jax.jit
    def rollout(key):
        task_key, reset_key, action_key = jax.random.split(key, 3)
        task_batch = env.sample_tasks(task_key, tasks)
        reset_keys = jax.random.split(reset_key, (tasks, episodes))
        state, _ = batched_reset(reset_keys, task_batch)

        def body(state, step_key):
            actions = jax.random.uniform(step_key, (tasks, episodes, env.action_size), minval=-1, maxval=1)
            state, _, reward, _ = batched_step(state, actions)
            return state, reward.sum()

        return jax.lax.scan(body, state, jax.random.split(action_key, steps))[1].sum()

    start = time.perf_counter()
    jax.block_until_ready(rollout(jax.random.key(0)))  # compile (and one run)
    compile_seconds = time.perf_counter() - start

    def run(seed):
        start = time.perf_counter()
        jax.block_until_ready(rollout(jax.random.key(seed)))
        return tasks * episodes * steps / (time.perf_counter() - start)  # the resets are included

    return run, compile_seconds


def _main_mjx(args):
    """gymnasium AsyncVectorEnv (C) against MJX vmapped, interleaved, medians."""
    import jax

    fns = [functools.partial(gymnasium.make, "l2l_multi.gym:HalfCheetahForwardBackward-v1")] * args.workers
    c_envs = gymnasium.vector.AsyncVectorEnv(fns, context="spawn")
    shape = (args.steps * 10, args.workers, 6)
    actions = np.random.default_rng(0).uniform(-1, 1, size=shape).astype(np.float32)
    mjx_run, compile_seconds = _mjx_runner(args.tasks, args.episodes, args.steps)
    results = {"gymnasium_async_c": [], "mjx_vmap": []}
    try:
        _measure(c_envs, actions[:20])
        for repeat in range(args.repeats):
            order = ("gymnasium_async_c", "mjx_vmap")
            for name in order if repeat % 2 == 0 else order[::-1]:
                if name == "mjx_vmap":
                    results[name].append(mjx_run(repeat + 1))
                else:
                    results[name].append(_measure(c_envs, actions)[0])
    finally:
        c_envs.close()
    medians = {name: statistics.median(values) for name, values in results.items()}
    print(f"device {jax.devices()[0].platform}, MJX compile {compile_seconds:.1f} s")
    for name, value in medians.items():
        print(f"{name:18s} median {value:10.0f} env-steps/s  (all: {[round(v) for v in results[name]]})")
    print(f"ratio mjx / gymnasium C = {medians['mjx_vmap'] / medians['gymnasium_async_c']:.3f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {
                    "workers": args.workers,
                    "tasks": args.tasks,
                    "episodes": args.episodes,
                    "steps": args.steps,
                    "c_steps_per_repeat": len(actions) * args.workers,
                    "device": str(jax.devices()[0]),
                    "mjx_compile_seconds": compile_seconds,
                    "env_steps_per_s": results,
                    "median_env_steps_per_s": medians,
                },
                handle,
                indent=2,
            )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--steps", type=int, help="vector steps per repeat (default 300; 20 with --mjx)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", help="also write the measurements to this JSON file")
    parser.add_argument("--mjx", action="store_true", help="gymnasium AsyncVectorEnv (C) against MJX vmapped")
    parser.add_argument("--tasks", type=int, default=20, help="--mjx: tasks in the vmapped batch")
    parser.add_argument("--episodes", type=int, default=20, help="--mjx: episodes per task")
    args = parser.parse_args()
    if args.steps is None:
        args.steps = 20 if args.mjx else 300
    if args.mjx:
        return _main_mjx(args)
    fns = [functools.partial(gymnasium.make, "l2l_multi.gym:HalfCheetahForwardBackward-v1")] * args.workers
    ours = l2l_gym.AsyncVectorEnv(fns)
    theirs = gymnasium.vector.AsyncVectorEnv(fns, context="spawn")
    actions = np.random.default_rng(0).uniform(-1, 1, size=(args.steps, args.workers, 6)).astype(np.float32)
    results = {"l2l_multi": [], "gymnasium": []}
    parent_cpu = {"l2l_multi": [], "gymnasium": []}
    pair = {"l2l_multi": ours, "gymnasium": theirs}
    try:
        _measure(ours, actions[:20])
        _measure(theirs, actions[:20])
        for repeat in range(args.repeats):
            # alternate who goes first: on 2 cores the first of a pair measured ~10% slower in A/A runs
            for name in ("l2l_multi", "gymnasium") if repeat % 2 == 0 else ("gymnasium", "l2l_multi"):
                rate, cpu = _measure(pair[name], actions)
                results[name].append(rate)
                parent_cpu[name].append(cpu)
    finally:
        ours.close()
        theirs.close()
    medians = {name: statistics.median(values) for name, values in results.items()}
    for name, value in medians.items():
        print(
            f"{name:10s} median {value:10.0f} env-steps/s, "
            f"parent CPU {statistics.median(parent_cpu[name]):6.0f} us/step  "
            f"(all: {[round(v) for v in results[name]]})"
        )
    paired = [a / b for a, b in zip(results["l2l_multi"], results["gymnasium"])]
    print(
        f"ratio l2l_multi / gymnasium = {medians['l2l_multi'] / medians['gymnasium']:.3f} (medians), "
        f"{statistics.median(paired):.3f} (median of {len(paired)} paired repeats)"
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {
                    "workers": args.workers,
                    "steps": args.steps,
                    "env_steps_per_s": results,
                    "parent_cpu_us_per_step": parent_cpu,
                    "median_ratio": statistics.median(paired),
                },
                handle,
                indent=2,
            )


if __name__ == "__main__":
    main()
