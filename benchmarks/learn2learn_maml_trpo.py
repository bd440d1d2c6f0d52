"""learn2learn 0.2.0's own MAML-TRPO script on our HalfCheetah forward/backward physics (issue 17).

Why: issue 17 asks whether learn2learn's own algorithm code reaches its published HalfCheetah
forward/backward figure on our physics (gymnasium HalfCheetah-v5, MuJoCo 3), i.e. whether a gap between
our MAML-TRPO and that figure comes from our algorithm code or from the physics. learn2learn's env needs
mujoco-py (MuJoCo 1.5/2.0), which cannot be installed here; everything else runs as learn2learn wrote it.

How: learn2learn's ``examples/rl/maml_trpo.py`` is read from its source folder at run time (it is not
copied into this repository), each change below is applied as an anchored text replacement (every anchor
must occur exactly once, else this fails naming the change), and the patched script is written into the
run folder and run with learn2learn's interpreter (learn2learn 0.2.0, cherry-rl 0.1.4, gym 0.26). The
code we add lives in ``benchmarks/_learn2learn_shims.py``, imported by the patched script. Changes:

* ``imports``: put this folder and learn2learn's ``examples/rl`` (its ``policies.py``) on ``sys.path``;
  stand-in cherry Monitor/Recorder modules before ``import cherry`` (their gym imports fail on gym 0.26);
* ``lstsq``: cherry's ``LinearValue.fit`` on ``torch.linalg.lstsq(driver='gels')`` (torch.lstsq is gone);
* ``env_name``: a label only (``'Particles2D-v1'`` was the default; the env is built by the shim);
* ``main_signature``, ``main_call``: ``out_dir``/``resume`` and flags --seed --iterations --num-workers
  --out --resume (learn2learn's ``main()`` takes keyword arguments only);
* ``make_env``: ``gym.make(env_name)`` becomes our shim (20-number observation, 100-step horizon, reward
  ``d * v_x - 0.05 |a|^2``: learn2learn's env on gymnasium's physics), reading the checkpoint first;
* ``vector_env``: each worker gets its own first-reset seed ``1000003 seed + 1009 start + i``;
  ``env.seed(seed)`` is dropped (gym 0.26's Env has no ``seed``; it never reached the workers anyway);
* ``loop``: restore policy, baseline and RNG streams on --resume; start at the checkpoint's iteration;
* ``record``: a metrics.csv row (iteration, adaptation_reward, wall_seconds) per iteration and an
  atomic checkpoint.pt every 10 iterations.

learn2learn's source folder: ``--learn2learn-src DIR``, else ``$LEARN2LEARN_SRC``, else
``../l2l-src/learn2learn-0.2.0`` beside this repository (the unpacked sdist). Its interpreter:
``--python PATH``, else ``$L2L_REFERENCE_PYTHON`` (as tests/test_learn2learn_api.py names it), else
``../l2l-venv/bin/python``. That interpreter needs learn2learn 0.2.0 (``learn2learn-venv.sh`` of the
project's tools builds it) plus what the example and our environment import:

    ../l2l-venv/bin/pip install --no-deps cherry-rl==0.1.4
    ../l2l-venv/bin/pip install gymnasium==1.4.0 mujoco==3.3.0 six imageio array-api-compat

(cherry 0.2 moved ``ch.envs`` and breaks the example). Run from anywhere (seed 42 is learn2learn's
default):

    python benchmarks/learn2learn_maml_trpo.py --seed 42                # 300 iterations, 10 workers
    python benchmarks/learn2learn_maml_trpo.py --seed 42 --resume       # continue from checkpoint.pt
    python benchmarks/learn2learn_maml_trpo.py --seed 42 --detach       # in the background (pid file)

The run folder (``--out``, default benchmarks/results/learn2learn_maml_trpo_halfcheetah_fb_1step_seed<S>)
gets maml_trpo.py (the patched script), config.json (settings, versions, changes), train.log, pid,
metrics.csv and checkpoint.pt. The child runs niced, with OMP_NUM_THREADS=1 and tqdm off.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
REPO_ROOT = BENCHMARKS.parent
if str(BENCHMARKS) not in sys.path:  # benchmarks/ is no package; the runners share _runner.py
    sys.path.insert(0, str(BENCHMARKS))
from _runner import set_autogroup_nice  # noqa: E402

SCRIPT = Path("examples") / "rl" / "maml_trpo.py"
DEFAULT_SRC = REPO_ROOT.parent / "l2l-src" / "learn2learn-0.2.0"
DEFAULT_PYTHON = REPO_ROOT.parent / "l2l-venv" / "bin" / "python"

# (name, why, anchor in learn2learn's text, replacement). "{shims_dir}" and "{policies_dir}" in a
# replacement become repr() of those folders. Every added line ends with "# CHANGED: ...".
CHANGES = (
    (
        "imports",
        "our shims and learn2learn's policies.py on sys.path; cherry stand-ins before `import cherry`",
        "import cherry as ch\nimport gym\n",
        "import sys  # CHANGED: paths of our shims and of learn2learn's examples/rl/policies.py\n"
        "sys.path[:0] = [{shims_dir}, {policies_dir}]  # CHANGED\n"
        "import _learn2learn_shims as shims  # CHANGED: our code (benchmarks/_learn2learn_shims.py)\n"
        "shims.install_cherry_stubs()  # CHANGED: cherry's Monitor/Recorder imports fail on gym 0.26\n"
        "import cherry as ch\nimport gym\n",
    ),
    (
        "lstsq",
        "cherry's LinearValue.fit calls torch.lstsq (removed); torch.linalg.lstsq(driver='gels') instead",
        "from cherry.models.robotics import LinearValue\n",
        "from cherry.models.robotics import LinearValue\n"
        "shims.use_gels_lstsq(LinearValue)  # CHANGED: torch.lstsq is gone; same solve, LAPACK gels\n",
    ),
    (
        "env_name",
        "a label only; the env is built by the shim",
        "env_name='Particles2D-v1',",
        "env_name='HalfCheetahForwardBackward-v1',  # CHANGED: was 'Particles2D-v1'; unused (shim below)",
    ),
    (
        "main_signature",
        "main() takes the run folder and --resume",
        "        cuda=0,\n):\n",
        "        cuda=0,\n"
        "        out_dir=None,  # CHANGED: metrics.csv and checkpoint.pt go here\n"
        "        resume=False,  # CHANGED: continue from out_dir/checkpoint.pt\n"
        "):\n",
    ),
    (
        "make_env",
        "gym.make (mujoco-py env) becomes our gymnasium shim with learn2learn's observation and horizon",
        "    def make_env():\n        env = gym.make(env_name)\n",
        "    # CHANGED: read the checkpoint first: the workers' reset seeds depend on the resume point\n"
        "    checkpoint, start_iteration = shims.load_checkpoint(out_dir, resume)  # CHANGED\n"
        "\n"
        "    def make_env(worker_seed):  # CHANGED: was make_env()\n"
        "        env = shims.HalfCheetahForwardBackwardShim(seed=worker_seed)  # CHANGED: was gym.make()\n",
    ),
    (
        "vector_env",
        "per-worker first-reset seeds; env.seed dropped (no Env.seed in gym 0.26; it never reached workers)",
        "    env = l2l.gym.AsyncVectorEnv([make_env for _ in range(num_workers)])\n    env.seed(seed)\n",
        "    env = l2l.gym.AsyncVectorEnv(shims.worker_env_fns(make_env, seed, start_iteration, num_workers))"
        "  # CHANGED: per-worker seeds; env.seed(seed) dropped\n",
    ),
    (
        "loop",
        "restore policy, baseline and RNG streams on --resume and start at the checkpoint's iteration",
        "    for iteration in range(num_iterations):\n",
        "    shims.restore(checkpoint, policy, baseline)  # CHANGED: --resume\n"
        "    record = shims.RunRecord(out_dir, checkpoint, start_iteration, seed, num_workers)  # CHANGED\n"
        "    for iteration in range(start_iteration, num_iterations):  # CHANGED: was range(num_iterations)\n"
        "        record.start_iteration()  # CHANGED: wall clock\n",
    ),
    (
        "record",
        "a metrics.csv row per iteration, checkpoint.pt every 10 iterations",
        "                break\n",
        "                break\n"
        "        record.end_iteration(iteration, adaptation_reward, policy, baseline)  # CHANGED: log\n",
    ),
    (
        "main_call",
        "flags --seed --iterations --num-workers --out --resume",
        "if __name__ == '__main__':\n    main()\n",
        "if __name__ == '__main__':\n    main(**shims.main_arguments())  # CHANGED: was main(); flags\n",
    ),
)


class PatchError(RuntimeError):
    """An anchor of ``CHANGES`` is missing from, or repeated in, learn2learn's script."""


def patch(text, policies_dir, shims_dir=BENCHMARKS):
    """learn2learn's maml_trpo.py ``text`` (str) with every change of ``CHANGES`` applied (str).

    Raises ``PatchError`` naming the change whose anchor does not occur exactly once (in the original
    text: anchors are counted before any replacement, so one change cannot create another's anchor).
    """
    for name, _, anchor, _ in CHANGES:
        count = text.count(anchor)
        if count != 1:
            raise PatchError(
                f"change {name!r}: its anchor occurs {count} times in learn2learn's {SCRIPT} "
                f"(expected exactly once): {anchor!r}"
            )
    for _, _, anchor, replacement in CHANGES:
        replacement = replacement.replace("{shims_dir}", repr(str(shims_dir)))
        text = text.replace(anchor, replacement.replace("{policies_dir}", repr(str(policies_dir))))
    return text


def _versions(python):
    """``{package: version}`` in learn2learn's interpreter ``python``."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "names = ('learn2learn', 'cherry-rl', 'torch', 'gym', 'gymnasium', 'mujoco', 'numpy')\n"
        "out = {}\n"
        "for n in names:\n"
        "    try:\n"
        "        out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError:\n"
        "        out[n] = None\n"
        "out['python'] = sys.version.split()[0]\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def _git_commit():
    """This repository's HEAD commit (str), or None outside git."""
    result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
    return result.stdout.strip() or None


def _from_repository(path) -> str:
    """``path`` relative to the repository (config.json names no machine's folders)."""
    return os.path.relpath(os.path.abspath(path), REPO_ROOT)  # (abspath: a venv's python is a symlink)


def main(argv=None):
    """Patches learn2learn's script into the run folder, writes config.json and runs it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--learn2learn-src", type=Path, default=Path(os.environ.get("LEARN2LEARN_SRC", DEFAULT_SRC))
    )
    parser.add_argument(
        "--python", type=Path, default=Path(os.environ.get("L2L_REFERENCE_PYTHON", DEFAULT_PYTHON))
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--num-workers", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint.pt")
    parser.add_argument("--nice", type=int, default=10)
    parser.add_argument("--detach", action="store_true", help="start in the background and return")
    args = parser.parse_args(argv)

    source = args.learn2learn_src / SCRIPT
    if not source.is_file():
        parser.error(f"{source} not found: pass --learn2learn-src (learn2learn 0.2.0's unpacked sdist)")
    if not args.python.exists():
        parser.error(f"{args.python} not found: pass --python (learn2learn 0.2.0's interpreter)")
    out = (
        args.out
        or REPO_ROOT
        / "benchmarks"
        / "results"
        / f"learn2learn_maml_trpo_halfcheetah_fb_1step_seed{args.seed}"
    )
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    original = source.read_text()
    patched = patch(original, policies_dir=source.parent.resolve())
    (out / "maml_trpo.py").write_text(patched)

    command = [
        "nice", "-n", str(args.nice), str(args.python), str(out / "maml_trpo.py"),
        "--seed", str(args.seed), "--iterations", str(args.iterations),
        "--num-workers", str(args.num_workers), "--out", str(out),
    ] + (["--resume"] if args.resume else [])  # fmt: skip
    config = {
        "issue": 17,
        "script": f"learn2learn 0.2.0 {SCRIPT}",
        "source": _from_repository(source),
        "source_sha256": hashlib.sha256(original.encode()).hexdigest(),
        "settings": {
            "seed": args.seed,
            "iterations": args.iterations,
            "num_workers": args.num_workers,
            "env": "l2l_multi HalfCheetahForwardBackwardEnv (gymnasium HalfCheetah-v5, MuJoCo 3), shimmed",
            "horizon": 100,
            "ctrl_cost_weight": 0.05,
            "observation": "float32[20]: qpos[1:], qvel, torso xpos",
            "worker_seed": "1000003 * seed + 1009 * start_iteration + worker",
            "script_defaults": "learn2learn's: adapt_lr 0.1, meta_lr 1.0, adapt_steps 1, meta_bsz 20, "
            "adapt_bsz 20, tau 1.0, gamma 0.95",
        },
        "versions": _versions(args.python),
        "repository_commit": _git_commit(),
        "command": [_from_repository(part) if os.path.isabs(part) else part for part in command],
        "changes": [{"name": name, "why": why} for name, why, _, _ in CHANGES],
    }
    if args.resume and (out / "config.json").exists():  # keep the start's record; log each resume
        started = json.loads((out / "config.json").read_text())
        keys = ("command", "versions", "repository_commit", "source_sha256")
        started.setdefault("resumes", []).append({k: config[k] for k in keys})
        config = started
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))  # l2l_multi
    with open(out / "train.log", "a") as log:
        child = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=out,
            start_new_session=args.detach,
        )  # fmt: skip
    if args.detach:  # its own session: nice ranks it only inside that session unless its autogroup is niced
        set_autogroup_nice(child.pid, args.nice)
    (out / "pid").write_text(f"{child.pid}\n")
    print(f"started PID {child.pid}: {' '.join(command)}\nlog: {out / 'train.log'}", flush=True)
    if args.detach:
        return 0
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
