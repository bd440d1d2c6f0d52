"""Env-steps/s of l2l_multi.gym.AsyncVectorEnv against gymnasium's AsyncVectorEnv on HalfCheetah.

Usage: python benchmarks/env_steps.py [--workers 8] [--steps 300] [--repeats 5]
Both use context="spawn", the same seeds and the same action sequence; repeats are interleaved and medians
reported, so drift on a shared machine hits both sides alike.
"""

import argparse
import functools
import statistics
import time

import gymnasium
import gymnasium.vector
import numpy as np

import l2l_multi.gym as l2l_gym


def _steps_per_second(envs, actions):
    envs.reset(seed=0)
    start = time.perf_counter()
    for action in actions:
        envs.step(action)
    return len(actions) * envs.num_envs / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    fns = [functools.partial(gymnasium.make, "l2l_multi.gym:HalfCheetahForwardBackward-v1")] * args.workers
    ours = l2l_gym.AsyncVectorEnv(fns)
    theirs = gymnasium.vector.AsyncVectorEnv(fns, context="spawn")
    actions = np.random.default_rng(0).uniform(-1, 1, size=(args.steps, args.workers, 6)).astype(np.float32)
    results = {"l2l_multi": [], "gymnasium": []}
    try:
        _steps_per_second(ours, actions[:20])
        _steps_per_second(theirs, actions[:20])
        for _ in range(args.repeats):
            results["l2l_multi"].append(_steps_per_second(ours, actions))
            results["gymnasium"].append(_steps_per_second(theirs, actions))
    finally:
        ours.close()
        theirs.close()
    medians = {name: statistics.median(values) for name, values in results.items()}
    for name, value in medians.items():
        print(f"{name:10s} median {value:10.0f} env-steps/s  (all: {[round(v) for v in results[name]]})")
    print(f"ratio l2l_multi / gymnasium = {medians['l2l_multi'] / medians['gymnasium']:.3f}")


if __name__ == "__main__":
    main()
