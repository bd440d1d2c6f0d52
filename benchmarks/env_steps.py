"""Env-steps/s of l2l_multi.gym.AsyncVectorEnv against gymnasium's AsyncVectorEnv on HalfCheetah.

Usage: python benchmarks/env_steps.py [--workers 8] [--steps 300] [--repeats 15] [--json out.json]
Both use context="spawn", the same seeds and the same action sequence; repeats are interleaved, with the
order alternating, and medians reported, so drift on a shared machine hits both sides alike. The parent
process's CPU time per vector step is reported too: it is where a wrapper's overhead lives, and it is far
less noisy than throughput when 8 workers share 2 cores.
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", help="also write the measurements to this JSON file")
    args = parser.parse_args()
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
