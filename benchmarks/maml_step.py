"""Seconds per MAML meta-step (Omniglot conv4, 5-way 1-shot): l2l_multi's torch paths and jax backend
against learn2learn's technique.

One meta-step = ``zero_grad``, the meta-loss of a meta-batch of tasks (each: adapt on its 5 support
images, then the loss on its 75 query images), ``backward`` and an Adam step, all timed. The model is
conv4 (``l2l.vision.models.OmniglotCNN``: 4 x [3x3 conv with 64 filters, BatchNorm with batch
statistics, ReLU, stride 2], spatial mean, linear to 5 ways) on random 1x28x28 inputs; second order unless
``--first-order``; ``--steps`` inner steps at lr 0.4. Rows, measured side by side in one run (same
initial weights, same tasks, interleaved rounds in a rotating order, median after warm-up):

* ``l2l loop``: ``meta_batch_loss(maml, maml.meta_parameters(), ..., task_map="sequential")``
  (``clone()``/``adapt()`` per task);
* ``l2l vmap (fast path)``: ``meta_batch_loss(..., task_map="vmap")`` (torch.func, vmapped);
* ``clone-and-update loop``: written here, learn2learn 0.2.0's technique (``p.clone()``,
  ``autograd.grad(create_graph=True)``, ``p - lr * g``, a functional forward);
* ``learn2learn 0.2.0``: its ``MAML.clone()/adapt()`` when ``import learn2learn`` works, else a
  line saying why it was skipped;
* ``l2l jax (jit, vmap|map, conv ...)``: the jax backend's ``make_meta_train_step`` (inner loop,
  tasks and the optax Adam update in one compiled function) on the same weights converted with
  ``l2l_multi.interop``; its first call (trace and compile) is reported separately.

Before timing, every row's meta-loss and meta-gradients are compared with the loop's in float64
(max relative difference; in float32 a ReLU input within rounding of zero can flip between
equally valid implementations); the run stops above 1e-8. Run from the repository root:

    python benchmarks/maml_step.py --device cpu --repeats 5 --warmup 1   # 2 CPU cores: ~70 s
    python benchmarks/maml_step.py --device cuda                          # strict fp32
    python benchmarks/maml_step.py --device cuda --tf32 --meta-batch 128
    python benchmarks/maml_step.py --quick --device cpu                   # smoke test, seconds
    python benchmarks/maml_step.py --json maml_step.json                  # also write JSON
"""

import argparse
import copy
import json
import platform
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import l2l_multi as l2l

WAYS, SHOTS, QUERIES, INNER_LR, OUTER_LR = 5, 1, 15, 0.4, 1e-3
LOOP, VMAP, STANDIN, LEARN2LEARN = (
    "l2l loop",
    "l2l vmap (fast path)",
    "clone-and-update loop (learn2learn technique)",
    "learn2learn 0.2.0",
)


def conv4() -> torch.nn.Module:
    """The library's OmniglotCNN: 4 x [3x3 conv 64, batch norm (batch statistics), ReLU, stride 2],
    spatial mean, linear to 5 ways; the jax rows use its flax twin with the same weights."""
    return l2l.vision.models.OmniglotCNN(WAYS)


def functional_forward(model, params, x):
    """``model(x)`` with the tensors ``params`` (in ``model.parameters()`` order) as its parameters."""
    names = [name for name, _ in model.named_parameters()]
    return torch.func.functional_call(model, dict(zip(names, params)), (x,))


def standin_meta_loss(model, tasks, lr, steps, first_order):
    """learn2learn 0.2.0's MAML, by hand: clone every parameter per task, differentiable SGD steps."""
    total = 0.0
    for sx, sy, qx, qy in zip(*tasks):
        params = [p.clone() for p in model.parameters()]
        for _ in range(steps):
            grads = torch.autograd.grad(
                F.cross_entropy(functional_forward(model, params, sx), sy),
                params,
                create_graph=not first_order,
            )
            params = [p - lr * g for p, g in zip(params, grads)]
        total = total + F.cross_entropy(functional_forward(model, params, qx), qy)
    return total / tasks[0].shape[0]


def learn2learn_meta_loss(maml, tasks, steps):
    total = 0.0
    for sx, sy, qx, qy in zip(*tasks):
        learner = maml.clone()
        for _ in range(steps):
            learner.adapt(F.cross_entropy(learner(sx), sy))
        total = total + F.cross_entropy(learner(qx), qy)
    return total / tasks[0].shape[0]


def make_tasks(meta_batch, device, seed):
    """Random images, labels 0..4 in order: ``(support_x, support_y, query_x, query_y)``, stacked."""
    generator, labels = torch.Generator().manual_seed(seed), torch.arange(WAYS)
    tasks = []
    for per_class in (SHOTS, QUERIES):
        tasks += [
            torch.randn(meta_batch, WAYS * per_class, 1, 28, 28, generator=generator),
            labels.repeat_interleave(per_class).repeat(meta_batch, 1),
        ]
    return tuple(t.to(device) for t in tasks)


def build_rows(model, args, tasks):
    """``[(name, meta_loss_fn, parameters)]`` with independent copies of ``model``, plus a skip note."""
    algorithms = l2l.algorithms
    rows = []
    for name, path in ((LOOP, "sequential"), (VMAP, "vmap")):
        maml = algorithms.MAML(copy.deepcopy(model), lr=INNER_LR, first_order=args.first_order)
        rows.append(
            (
                name,
                lambda maml=maml, path=path: (
                    algorithms.meta_batch_loss(
                        maml, maml.meta_parameters(), *tasks, steps=args.steps, task_map=path
                    ).loss
                ),
                list(maml.parameters()),
            )
        )
    standin = copy.deepcopy(model)
    rows.append(
        (
            STANDIN,
            lambda: standin_meta_loss(standin, tasks, INNER_LR, args.steps, args.first_order),
            list(standin.parameters()),
        )
    )
    try:
        import learn2learn
    except Exception as error:  # its import chain (torchvision) can fail with any error
        return rows, f"{type(error).__name__}: {error}"
    theirs = learn2learn.algorithms.MAML(copy.deepcopy(model), lr=INNER_LR, first_order=args.first_order)
    rows.append(
        (LEARN2LEARN, lambda: learn2learn_meta_loss(theirs, tasks, args.steps), list(theirs.parameters()))
    )
    return rows, None


def build_jax_rows(model, args, tasks):
    """Rows running the jax backend's compiled meta-step on the same weights and tasks."""
    try:
        import jax
        import jax.numpy as jnp
        import optax
        from l2l_multi.backends.jax import algorithms as jalg
        from l2l_multi.backends.jax.vision import models as jmodels

        from l2l_multi import interop
    except ImportError as error:
        return [], f"{type(error).__name__}: {error}"
    jax.config.update("jax_default_matmul_precision", "tensorfloat32" if args.tf32 else "highest")
    arrays = tuple(jnp.asarray(t.cpu().numpy()) for t in tasks)
    rows = []
    for task_map in args.jax_task_maps.split(","):
        flax_model = jmodels.OmniglotCNN(WAYS, implementation=args.jax_conv)
        maml = jalg.MAML(flax_model, lr=INNER_LR, first_order=args.first_order)
        meta = maml.from_variables(interop.torch_to_flax(copy.deepcopy(model).cpu(), flax_model))
        optimizer = optax.adam(OUTER_LR)
        state = {"meta": meta, "opt": optimizer.init(meta)}
        step = jalg.make_meta_train_step(maml, optimizer, adaptation_steps=args.steps, task_map=task_map)

        def run(step=step, state=state):
            state["meta"], state["opt"], metrics = step(state["meta"], state["opt"], *arrays)
            jax.block_until_ready(metrics.loss)

        compile_start = time.perf_counter()
        run()  # the first call traces and compiles; its weights are reset below
        compile_s = time.perf_counter() - compile_start
        state.update(meta=meta, opt=optimizer.init(meta))
        rows.append(
            {
                "name": f"l2l jax (jit, {task_map}, conv {args.jax_conv})",
                "run": run,
                "compile_s": compile_s,
            }
        )
    return rows, None


def _host(value):
    """A CPU torch tensor of a torch tensor (any device), jax array or numpy array."""
    return value.detach().cpu() if torch.is_tensor(value) else torch.as_tensor(np.array(value))


def max_relative_difference(a, b):
    """``max |a - b| / max |b|`` over all tensors of the two lists together."""
    return max((x - y).abs().max().item() for x, y in zip(a, b)) / max(y.abs().max().item() for y in b)


def torch_rows(rows, tf32_device):
    """``(name, loss_fn, params)`` torch rows as dicts with ``run`` (a timed meta-step with Adam)
    and ``check`` (meta-loss and meta-gradients without a step)."""
    out = []
    for name, loss_fn, params in rows:
        optimizer = torch.optim.Adam(params, lr=OUTER_LR)

        def run(loss_fn=loss_fn, optimizer=optimizer):
            optimizer.zero_grad()
            loss_fn().backward()
            optimizer.step()
            tf32_device()

        def check(loss_fn=loss_fn, params=params):
            loss = loss_fn()
            return loss.item(), torch.autograd.grad(loss, params)

        out.append({"name": name, "run": run, "check": check})
    return out


def check_agreement(model, args, tasks, tolerance):
    """Meta-loss and meta-gradients of every implementation against the l2l loop's, in float64.

    float64, because in float32 a ReLU pre-activation within rounding of zero (a few in a
    meta-batch of random images) flips sign between equally valid implementations and moves the
    gradient by O(1): a float32 comparison cannot tell that apart from a bug. Jax gradients are
    compared in the flax layout through ``l2l_multi.interop``.
    """
    model64 = copy.deepcopy(model).double()
    tasks64 = tuple(t.double() if t.is_floating_point() else t for t in tasks)
    rows, _ = build_rows(model64, args, tasks64)
    checks = torch_rows(rows, lambda: None)
    reference_loss, reference_grads = checks[0]["check"]()
    results = {row["name"]: row["check"]() for row in checks[1:]}
    if not args.no_jax:
        results.update(jax_float64_checks(model64, args, tasks64, reference_grads))
    differences = {}
    for name, (loss, grads, expected) in (
        (n, r if len(r) == 3 else (*r, reference_grads)) for n, r in results.items()
    ):
        differences[name] = {
            "loss": abs(loss - reference_loss) / abs(reference_loss),
            "grads": max_relative_difference([_host(g) for g in grads], [_host(e) for e in expected]),
        }
        print(
            f"check (float64) vs l2l loop: {name}: meta-loss rel. diff {differences[name]['loss']:.1e}, "
            f"meta-gradient max rel. diff {differences[name]['grads']:.1e}"
        )
    worst = max((max(d.values()) for d in differences.values()), default=0.0)
    if worst > tolerance:
        raise SystemExit(
            f"the implementations disagree (max relative difference {worst:.1e} > "
            f"{tolerance:.0e}): not timing a wrong computation"
        )
    return differences


def jax_float64_checks(model64, args, tasks64, reference_grads):
    """``{row name: (loss, grads, torch grads in the flax layout)}`` for the jax rows, in float64."""
    import jax
    import numpy as np
    from l2l_multi.backends.jax import algorithms as jalg
    from l2l_multi.backends.jax.vision import models as jmodels

    from l2l_multi import interop

    holder = copy.deepcopy(model64).cpu()
    with torch.no_grad():
        for param, grad in zip(holder.parameters(), reference_grads):
            param.copy_(grad)
    out = {}
    with jax.enable_x64(True):
        expected = [np.asarray(a) for a in jax.tree_util.tree_leaves(interop.torch_to_flax(holder)["params"])]
        arrays = tuple(jax.numpy.asarray(t.cpu().numpy()) for t in tasks64)
        for task_map in args.jax_task_maps.split(","):
            flax_model = jmodels.OmniglotCNN(WAYS, implementation=args.jax_conv)
            maml = jalg.MAML(flax_model, lr=INNER_LR, first_order=args.first_order)
            meta = maml.from_variables(interop.torch_to_flax(copy.deepcopy(model64).cpu(), flax_model))
            value = lambda m, maml=maml, task_map=task_map: (
                jalg.meta_batch_loss(maml, m, *arrays, steps=args.steps, task_map=task_map).loss
            )
            loss, grads = jax.jit(jax.value_and_grad(value))(meta)
            leaves = [np.asarray(a) for a in jax.tree_util.tree_leaves(grads["model"]["params"])]
            out[f"l2l jax (jit, {task_map}, conv {args.jax_conv})"] = (float(loss), leaves, expected)
    return out


def time_rows(rows, args):
    times = {row["name"]: [] for row in rows}
    for round_index in range(args.warmup + args.repeats):
        shift = round_index % len(rows)
        for row in rows[shift:] + rows[:shift]:  # rotate, so no row always runs first
            start = time.perf_counter()
            row["run"]()
            if round_index >= args.warmup:
                times[row["name"]].append(time.perf_counter() - start)
    return times


def summarize(times):
    summary = {}
    for name, values in times.items():
        q1, _, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
        summary[name] = {
            "median_s": statistics.median(values),
            "q1_s": q1,
            "q3_s": q3,
            "min_s": min(values),
            "max_s": max(values),
            "times_s": values,
        }
    for row in summary.values():
        row["speedup_vs_l2l_loop"] = summary[LOOP]["median_s"] / row["median_s"]
        row["speedup_vs_standin"] = summary[STANDIN]["median_s"] / row["median_s"]
    return summary


def print_table(summary, skipped):
    lines = [
        [
            "implementation",
            "median s/step",
            "IQR (s)",
            "min-max (s)",
            "speedup vs loop",
            "speedup vs stand-in",
        ]
    ]
    for name, row in summary.items():
        lines.append(
            [
                name,
                f"{row['median_s']:.4f}",
                f"{row['q1_s']:.4f}-{row['q3_s']:.4f}",
                f"{row['min_s']:.4f}-{row['max_s']:.4f}",
                f"{row['speedup_vs_l2l_loop']:.2f}x",
                f"{row['speedup_vs_standin']:.2f}x",
            ]
        )
    if skipped:
        lines.append([LEARN2LEARN] + ["skipped"] * 5)
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    print()
    for number, line in enumerate(lines):
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])]
        print("| " + " | ".join(cells) + " |")
        if number == 0:
            print("|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--meta-batch", type=int, default=32, help="tasks per meta-step (default 32)")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    parser.add_argument("--threads", type=int, help="set_num_threads (default 1 on CPU, unchanged on CUDA)")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matmul/cuDNN (default strict fp32)")
    parser.add_argument("--first-order", action="store_true", help="first-order MAML")
    parser.add_argument("--steps", type=int, default=1, help="inner steps at lr 0.4 (default 1)")
    parser.add_argument("--no-jax", action="store_true", help="skip the jax rows")
    parser.add_argument("--jax-task-maps", default="vmap", help="comma-separated: vmap,map (default vmap)")
    parser.add_argument(
        "--jax-conv",
        default="auto",
        choices=("auto", "matmul", "xla"),
        help="jax convolution: auto = matmul on CPU, XLA's on GPU",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--check-tolerance", type=float, default=1e-8, help="float64 agreement needed before timing"
    )
    parser.add_argument("--quick", action="store_true", help="smoke test: meta-batch 2, 1 repeat, 1 warm-up")
    parser.add_argument("--json", metavar="PATH", help="also write config and rows to PATH")
    args = parser.parse_args(argv)
    if args.quick:
        args.meta_batch, args.repeats, args.warmup = 2, 1, 1
    if min(args.meta_batch, args.repeats, args.steps) < 1 or args.warmup < 0:
        parser.error("--meta-batch, --repeats and --steps must be >= 1, --warmup >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    device = torch.device(args.device)
    torch.set_num_threads(args.threads or (1 if device.type == "cpu" else torch.get_num_threads()))
    l2l.set_backend("torch")
    torch.manual_seed(args.seed)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else (f"CPU {platform.machine()}, {torch.get_num_threads()} thread(s)")
    )
    print(
        f"device: {name}; torch {torch.__version__}; dtype float32; TF32 "
        f"{'on' if args.tf32 else 'off (strict fp32)'}"
    )
    print(
        f"conv4 (OmniglotCNN, stride 2), {WAYS}-way {SHOTS}-shot, {QUERIES} query "
        f"per class, meta-batch {args.meta_batch}, {'first' if args.first_order else 'second'} order, "
        f"{args.steps} inner step(s) at lr {INNER_LR}, Adam {OUTER_LR}; median of {args.repeats} after "
        f"{args.warmup} warm-up round(s)\n"
    )

    model = conv4().to(device)
    tasks = make_tasks(args.meta_batch, device, args.seed)
    rows, skipped = build_rows(model, args, tasks)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rows = torch_rows(rows, sync)
    jax_rows, jax_skipped = ([], "--no-jax") if args.no_jax else build_jax_rows(model, args, tasks)
    rows += jax_rows
    # the check runs in strict fp32 (TF32 rounding would hide errors like functorch issue 534's 2e-3)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    differences = check_agreement(model, args, tasks, tolerance=args.check_tolerance)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32
    times = time_rows(rows, args)
    summary = summarize(times)
    for row in jax_rows:
        summary[row["name"]]["compile_s"] = row["compile_s"]
    print_table(summary, skipped)
    if skipped:
        print(f"\n{LEARN2LEARN} skipped: `import learn2learn` failed ({skipped})")
    for row in jax_rows:
        print(f"{row['name']}: first call (trace + compile + one step) {row['compile_s']:.1f} s, not timed")
    if jax_skipped:
        print(f"jax rows skipped: {jax_skipped}")
    if args.json:
        config = {k: v for k, v in vars(args).items() if k != "json"}
        config.update(
            device_name=name,
            torch=torch.__version__,
            dtype="float32",
            threads=torch.get_num_threads(),
            ways=WAYS,
            shots=SHOTS,
            queries=QUERIES,
            inner_lr=INNER_LR,
            outer_lr=OUTER_LR,
        )
        with open(args.json, "w") as file:
            json.dump(
                {
                    "config": config,
                    "check_vs_l2l_loop": differences,
                    "learn2learn_skipped": skipped,
                    "jax_skipped": jax_skipped,
                    "rows": summary,
                },
                file,
                indent=2,
            )
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main(sys.argv[1:])
