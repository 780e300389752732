"""How close a sweep gets to the machine: each program's FLOPs and bytes (XLA's cost analysis,
counted through loops) against this machine's measured peaks.

The helpers, used by the throughput benchmarks too:

- :func:`peaks` measures the machine: a large float32 matmul on every device at once (FLOP/s)
  and a large elementwise copy (bytes/s, read + write), best of a few runs.
- :func:`program_cost` gives a function's FLOPs and bytes accessed from XLA's cost analysis of
  its compiled program. XLA counts a loop's body once whatever its trip count, so every
  ``lax.scan`` (the training loop, a GRU's loop over time, ...) is costed as its own program and
  counted ``length`` times, recursively: ``T(f) = X(f) + sum over f's scans of (length x T(body) -
  X(body))``, with ``X`` XLA's count. A ``while`` of unknown trip count is counted once (reported).
- :func:`columns` turns (FLOPs, bytes, seconds) into achieved GFLOP/s, GB/s and fractions of peak.

The benchmark: for the built-in MNIST-1D MLP, CNN and GRU tasks at several N, the plain vmap
(``jit(vmap(trial))``, a part of the trial axis on each device, as ``throughput.py``'s
hand-written baseline) and jaxtune (``Executor.run``, what ``jt.tune`` runs) are timed (run only,
best of --repeats, compile apart), and each gets the fraction of peak FLOP/s and bytes/s it
reached. Both compute the same trials, so they share one count of useful FLOPs and bytes.

    python benchmarks/roofline.py                         # CPU: N = 1, 8, 64, 256
    python benchmarks/roofline.py --ns 1,64,512,4096 --steps 500   # a GPU
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import jax
import jax.extend.core
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

import jaxtune as jt  # noqa: E402


@dataclasses.dataclass
class Cost:
    """A program's work: FLOPs and bytes accessed, and loops XLA could not count (``while``)."""

    flops: float
    bytes: float
    uncounted_loops: int = 0


def _xla(fn, args) -> tuple[float, float]:
    """XLA's own (loop bodies once) FLOPs and bytes of ``fn(*args)``'s compiled program."""
    ca = jax.jit(fn).lower(*args).compile().cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    return float(ca.get("flops", 0.0)), float(ca.get("bytes accessed", 0.0))


def _sub_jaxprs(eqn):
    for v in eqn.params.values():
        for x in v if isinstance(v, (tuple, list)) else (v,):
            if isinstance(x, jax.extend.core.ClosedJaxpr):
                yield x
            elif isinstance(x, jax.extend.core.Jaxpr):
                yield jax.extend.core.ClosedJaxpr(x, ())


def _loops(closed) -> tuple[list, int]:
    """The scans of a jaxpr (through calls, custom derivatives, conds), and its whiles."""
    scans, whiles = [], 0
    for eqn in closed.jaxpr.eqns:
        if eqn.primitive.name == "scan":
            scans.append((eqn.params["length"], eqn.params["jaxpr"]))
        else:
            whiles += eqn.primitive.name == "while"
            for sub in _sub_jaxprs(eqn):
                s, w = _loops(sub)
                scans += s
                whiles += w
    return scans, whiles


def _jaxpr_cost(closed) -> tuple[Cost, tuple[float, float]]:
    """The jaxpr's work counted through its scans, and XLA's own count of it (bodies once)."""
    args = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in closed.jaxpr.invars]
    once = _xla(jax.extend.core.jaxpr_as_fun(closed), args)
    flops, nbytes = once
    scans, whiles = _loops(closed)
    for length, body in scans:
        inner, inner_once = _jaxpr_cost(body)
        flops += length * inner.flops - inner_once[0]
        nbytes += length * inner.bytes - inner_once[1]
        whiles += inner.uncounted_loops
    return Cost(flops, nbytes, whiles), once


def program_cost(fn, *args) -> Cost:
    """FLOPs and bytes accessed of ``fn(*args)`` (arrays or ShapeDtypeStructs) from XLA's cost
    analysis, every ``lax.scan`` counted as many times as it runs."""
    return _jaxpr_cost(jax.make_jaxpr(fn)(*args))[0]


def _best(fn, repeats: int) -> float:
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return min(times)


def peaks(devices=None, matmul: int | None = None, copy_mb: int | None = None, repeats: int = 5) -> dict:
    """This machine's measured float32 peaks over ``devices`` (default all) running at once: a
    ``matmul x matmul`` product on each (FLOP/s) and a copy of ``copy_mb`` MB on each (bytes/s,
    read + write)."""
    devices = devices or jax.devices()
    gpu = devices[0].platform != "cpu"
    n = matmul or (8192 if gpu else 2048)
    mb = copy_mb or (2048 if gpu else 256)
    mm = jax.jit(lambda a, b: a @ b)
    cp = jax.jit(lambda a: a * 1.5)
    mats = [jax.device_put(jnp.ones((n, n), jnp.float32), d) for d in devices]
    vecs = [jax.device_put(jnp.ones((mb * 2**20 // 4,), jnp.float32), d) for d in devices]
    t_mm = _best(lambda: [mm(m, m) for m in mats], repeats)
    t_cp = _best(lambda: [cp(v) for v in vecs], repeats)
    # The same elementwise pass over an array that fits in a core's cache (256 KiB), 2,000 times
    # in one program: what a small model's weights and activations, which stay there, can reach.
    small, passes = 2**16, 2000
    loop = jax.jit(lambda a: jax.lax.fori_loop(0, passes, lambda _, x: x * 1.0001 + 1e-4, a))
    smalls = [jax.device_put(jnp.ones((small,), jnp.float32), d) for d in devices]
    t_cache = _best(lambda: [loop(v) for v in smalls], repeats)
    return {
        "flops_per_s": 2 * n**3 * len(devices) / t_mm,
        "bytes_per_s": 2 * mb * 2**20 * len(devices) / t_cp,
        "cache_bytes_per_s": 2 * 4 * small * passes * len(devices) / t_cache,
        "matmul": n,
        "copy_mb": mb,
        "devices": len(devices),
        "device": devices[0].device_kind,
    }


def columns(prefix: str, cost: Cost, seconds: float, peak: dict) -> dict:
    """``{prefix}_gflops``, ``_flops_frac``, ``_gbytes``, ``_bytes_frac``: what ``seconds`` of
    running ``cost``'s work reached, absolute and as a fraction of ``peak``."""
    flops, nbytes = cost.flops / seconds, cost.bytes / seconds
    out = {
        f"{prefix}_gflops": flops / 1e9,
        f"{prefix}_flops_frac": flops / peak["flops_per_s"],
        f"{prefix}_gbytes": nbytes / 1e9,
        f"{prefix}_bytes_frac": nbytes / peak["bytes_per_s"],
    }
    if "cache_bytes_per_s" in peak:
        out[f"{prefix}_cache_bytes_frac"] = nbytes / peak["cache_bytes_per_s"]
    return out


def measure(task_name: str, n: int, steps: int, peak: dict, repeats: int) -> dict:
    """One row: the plain vmap and jaxtune on ``n`` trials of a built-in task, with their fractions of peak."""
    from jaxtune.execute import Executor

    task = jt.tasks.get(task_name, steps=steps)
    space = task.space
    hp = {k: jnp.asarray(v) for k, v in space.sample(jax.random.key(1), n).items()}
    keys = jax.random.split(jax.random.key(0), n)
    parts = common.split_over_devices((hp, keys), n)
    plain = jax.jit(jax.vmap(task.objective))
    row = {"task": task_name, "N": n, "steps": steps, "devices": len(parts)}
    t = time.perf_counter()
    jax.block_until_ready([plain(*p) for p in parts])
    row["plain_compile_s"] = time.perf_counter() - t
    row["plain_s"] = _best(lambda: [plain(*p) for p in parts], repeats) if repeats else None
    ex = Executor(task.objective, space)
    t = time.perf_counter()
    jax.block_until_ready([m for _, m, _ in ex.run(hp, keys)])
    row["jaxtune_compile_s"] = time.perf_counter() - t
    row["jaxtune_s"] = _best(lambda: [m for _, m, _ in ex.run(hp, keys)], repeats)
    cost = Cost(0.0, 0.0)
    for p in parts:  # the same trials' work, as each device's part computes it
        c = program_cost(jax.vmap(task.objective), *p)
        cost = Cost(cost.flops + c.flops, cost.bytes + c.bytes, max(cost.uncounted_loops, c.uncounted_loops))
    row.update(flops=cost.flops, bytes=cost.bytes, uncounted_loops=cost.uncounted_loops)
    row["intensity"] = cost.flops / max(cost.bytes, 1.0)  # FLOPs per byte: where the roofline bends
    row.update(columns("plain", cost, row["plain_s"], peak))
    row.update(columns("jaxtune", cost, row["jaxtune_s"], peak))
    row["jaxtune_vs_plain"] = row["plain_s"] / row["jaxtune_s"]
    return row


def table(rows: list[dict], peak: dict) -> str:
    """A markdown table: per task and N, seconds and fractions of peak FLOP/s (and bytes/s)."""
    out = [f"peaks on {peak['devices']} x {peak['device']}: {peak['flops_per_s'] / 1e9:.1f} GFLOP/s "
           f"(float32 matmul {peak['matmul']}), {peak['bytes_per_s'] / 1e9:.1f} GB/s (a {peak['copy_mb']} MB copy), "
           f"{peak.get('cache_bytes_per_s', float('nan')) / 1e9:.1f} GB/s (in cache)", "",
           "| task | N | steps | FLOPs/byte | plain vmap s | jaxtune s | plain % peak FLOP/s | jaxtune % peak FLOP/s "
           "| jaxtune bytes/s % of copy (of cache) | jaxtune vs plain |",
           "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        cache = f" ({100 * r['jaxtune_cache_bytes_frac']:.0f})" if "jaxtune_cache_bytes_frac" in r else ""
        out.append(
            f"| {r['task']} | {r['N']} | {r['steps']} | {r['intensity']:.1f} | {r['plain_s']:.3f} | "
            f"{r['jaxtune_s']:.3f} | {100 * r['plain_flops_frac']:.1f} | {100 * r['jaxtune_flops_frac']:.1f} | "
            f"{100 * r['jaxtune_bytes_frac']:.0f}{cache} | {r['jaxtune_vs_plain']:.2f}x |"
        )
    return "\n".join(out)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="mnist1d_mlp,mnist1d_cnn,mnist1d_gru")
    p.add_argument("--ns", default="1,8,64,256")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--one-device", action="store_true", help="one JAX device (no jt.use_cpu_cores)")
    p.add_argument("--name", default=None)
    p.add_argument("--out", default=None)
    p.add_argument("--append", action="store_true", help="add these rows to the JSON's (same peaks kept)")
    a = p.parse_args(argv)
    if not a.one_device:
        jt.use_cpu_cores()  # what the CLI does: one device per core, for every method
    name = a.name or f"roofline_{jax.default_backend()}"
    path = a.out or os.path.join(common.RESULTS, f"{name}.json")
    rows, peak = [], None
    if a.append and os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        rows, peak = old["rows"], old["peaks"]
    peak = peak or peaks()
    print(f"peaks: {peak}", flush=True)
    for task_name in a.tasks.split(","):
        for n in [int(v) for v in a.ns.split(",")]:
            rows.append(measure(task_name, n, a.steps, peak, a.repeats))
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()}, flush=True)
    text = table(rows, peak)
    print(text)
    common.write(name, {"peaks": peak, "rows": rows, "table": text}, path)


if __name__ == "__main__":
    main()
