import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SPACE, quad_objective
from tolerances import F32

import jaxtune as jt
from jaxtune.execute import Executor


def collect(ex, hp, keys):
    out = {}
    sizes = []
    for idx, metrics, _ in ex.run(hp, keys):
        sizes.append(len(idx))
        for j, i in enumerate(idx):
            out[int(i)] = metrics["loss"][j]
    return np.asarray([out[i] for i in range(len(out))]), sizes


@pytest.mark.parametrize("vmap_width", [1, 3, None])
def test_sequential_groups_inside_a_program_equal_the_full_vmap(vmap_width, key):
    hp = SPACE.sample(key, 16)
    keys = jax.random.split(key, 16)
    reference, _ = collect(Executor(quad_objective, SPACE, vmap_width=None), hp, keys)
    got, _ = collect(Executor(quad_objective, SPACE, vmap_width=vmap_width), hp, keys)
    np.testing.assert_allclose(got, reference, rtol=1e-5)


def test_out_of_memory_halves_the_chunk_and_loses_nothing(key, monkeypatch, caplog):
    hp = SPACE.sample(key, 16)
    keys = jax.random.split(key, 16)
    reference, _ = collect(Executor(quad_objective, SPACE), hp, keys)
    from jaxtune.execute import Programs

    original = Programs.get

    def small_device(self, static, width, ndev):
        program = original(self, static, width, ndev)
        if width > 4:

            def oom(*args):
                raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate")

            return oom
        return program

    monkeypatch.setattr(Programs, "get", small_device)
    with caplog.at_level("WARNING", logger="jaxtune"):
        got, sizes = collect(Executor(quad_objective, SPACE), hp, keys)
    assert sizes == [4, 4, 4, 4]
    # The recovery is reported in one line per halving, not as a traceback.
    assert caplog.text.count("do not fit in memory") == 2
    np.testing.assert_allclose(got, reference, rtol=1e-5)


def test_out_of_memory_in_one_bucket_halves_that_bucket_only(key, monkeypatch, caplog):
    from jaxtune.execute import Programs

    space = jt.Space({"x": jt.Float(-1, 1), "depth": jt.Choice([1, 2], static=True)})

    def objective(hp, key):
        return {"loss": (hp["x"] - 0.1 * hp["depth"]) ** 2}

    hp = space.sample(key, 24)
    keys = jax.random.split(key, 24)
    reference = {
        int(i): m["loss"][j] for idx, m, _ in Executor(objective, space).run(hp, keys) for j, i in enumerate(idx)
    }
    original = Programs.get

    def deep_is_big(self, bucket, width, ndev):  # only depth=2 runs out of memory above 2 trials
        program = original(self, bucket, width, ndev)
        if bucket == (2,) and width > 2:

            def oom(*args):
                raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate")

            return oom
        return program

    monkeypatch.setattr(Programs, "get", deep_is_big)
    ex = Executor(objective, space)
    with caplog.at_level("WARNING", logger="jaxtune"):
        chunks = [(bucket_of, idx, m) for idx, m, _ in ex.run(hp, keys) for bucket_of in [int(hp["depth"][idx[0]])]]
    sizes = {d: [len(idx) for b, idx, _ in chunks if b == d] for d in (1, 2)}
    assert len(sizes[1]) == 1 and set(sizes[2]) <= {1, 2} and sum(sizes[2]) == int(np.sum(hp["depth"] == 2))
    assert ex.programs.caps == {(2,): 2}  # the other bucket keeps its full width
    got = {int(i): m["loss"][j] for _, idx, m in chunks for j, i in enumerate(idx)}
    np.testing.assert_allclose([got[i] for i in range(24)], [reference[i] for i in range(24)], **F32)


def test_memory_analysis_budget_shrinks_chunks(key):
    hp = SPACE.sample(key, 8)
    keys = jax.random.split(key, 8)
    reference, _ = collect(Executor(quad_objective, SPACE), hp, keys)
    ex = Executor(quad_objective, SPACE)
    ex.programs.memory_budget = 1  # by the estimate nothing fits: chunks shrink to one trial, which still runs
    got, sizes = collect(ex, hp, keys)
    assert sizes == [1] * 8
    np.testing.assert_allclose(got, reference, rtol=1e-5)


def test_a_wide_bucket_is_sized_by_a_probe_before_its_full_width_compiles(key, monkeypatch, caplog):
    import jaxtune.execute.programs as programs

    monkeypatch.setattr(programs, "PROBE_WIDTH", 2)
    hp = SPACE.sample(key, 32)
    keys = jax.random.split(key, 32)
    reference, _ = collect(Executor(quad_objective, SPACE), hp, keys)
    ex = Executor(quad_objective, SPACE)
    per_trial = ex.programs.need((), 2, 1) / 2
    ex.programs.memory_budget = int(5.5 * per_trial)  # room for 5 trials: chunks of 4
    got, sizes = collect(ex, hp, keys)
    assert sizes == [4] * 8
    # Only the probe and the width that fits were compiled: no 32-wide program found too big,
    # and no out-of-memory recovery to report.
    assert sorted(width for _, width, _ in ex.programs.futures) == [2, 4]
    assert "do not fit" not in caplog.text
    np.testing.assert_allclose(got, reference, rtol=1e-5)


def test_memory_budget_is_a_share_of_the_available_host_memory():
    from jaxtune.execute import memory_budget

    with open("/proc/meminfo") as f:  # the suite runs on Linux
        available = int(next(line for line in f if line.startswith("MemAvailable")).split()[1]) * 1024
    budget = memory_budget(jax.devices()[0], fraction=0.5)
    assert isinstance(budget, int) and 0.3 * available < budget < 0.7 * available


def test_max_batch_chunks(key):
    hp = SPACE.sample(key, 10)
    keys = jax.random.split(key, 10)
    ex = Executor(quad_objective, SPACE, max_batch=4)
    got, sizes = collect(ex, hp, keys)
    assert sizes == [4, 4, 2]
    reference, _ = collect(Executor(quad_objective, SPACE), hp, keys)
    np.testing.assert_allclose(got, reference, rtol=1e-5)


def test_sharded_over_four_devices_equals_one_device(tmp_path):
    """Runs in a subprocess: the device count is fixed when JAX starts."""
    script = textwrap.dedent("""
        import jax, json, numpy as np, sys
        sys.path.insert(0, "tests")
        assert jax.device_count() == 4, jax.devices()
        import jaxtune as jt
        from jaxtune.execute import Executor
        from conftest import SPACE, quad_objective
        key = jax.random.key(0)
        hp = SPACE.sample(key, 10)
        keys = jax.random.split(key, 10)
        def losses(ex):
            out = {}
            for idx, m, _ in ex.run(hp, keys):
                out.update({int(i): float(m["loss"][j]) for j, i in enumerate(idx)})
            return [out[i] for i in range(10)]
        four = Executor(quad_objective, SPACE)
        assert four.num_devices == 4
        # lax.map groups inside each device's shard (what the CPU benchmarks run): 16 trials,
        # 4 a device, vmapped 2 at a time.
        hp16, keys16 = SPACE.sample(jax.random.key(1), 16), jax.random.split(jax.random.key(1), 16)
        def run16(ex):
            out = {}
            for idx, m, _ in ex.run(hp16, keys16):
                out.update({int(i): float(m["loss"][j]) for j, i in enumerate(idx)})
            return [out[i] for i in range(16)]
        grouped = Executor(quad_objective, SPACE, vmap_width=2)
        np.testing.assert_allclose(run16(grouped), run16(Executor(quad_objective, SPACE, devices=jax.devices()[:1])),
                                   rtol=2e-5, atol=1e-6)  # tests/tolerances.py F32: two programs
        assert [w for _, w, nd in grouped.programs.futures] == [16] and grouped.vmap_width == 2
        one = Executor(quad_objective, SPACE, devices=jax.devices()[:1])
        r = jt.tune(quad_objective, SPACE, "coarse_to_fine", trials=6, rounds=2, metric="loss", progress=False)
        # Fewer trials than devices: one device per trial, no padded copies on the others.
        few = Executor(quad_objective, SPACE)
        small = {n: v[:3] for n, v in hp.items()}
        got = [float(m["loss"][j]) for idx, m, _ in few.run(small, keys[:3]) for j in range(len(idx))]
        assert sorted(nd for _, _, nd in few.programs.futures) == [3], list(few.programs.futures)
        list(few.run({n: v[:1] for n, v in hp.items()}, keys[:1]))
        assert sorted(nd for _, _, nd in few.programs.futures) == [1, 3], list(few.programs.futures)
        print(json.dumps({"four": losses(four), "one": losses(one), "tuned": len(r), "few": got}))
    """)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    out = json.loads(proc.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(out["four"], out["one"], rtol=1e-5)
    np.testing.assert_allclose(out["few"], out["one"][:3], rtol=1e-5)
    assert out["tuned"] == 12


def test_executor_argument_errors():
    with pytest.raises(ValueError, match="vmap_width must be an int >= 1 or None, got 0"):
        Executor(quad_objective, SPACE, vmap_width=0)
    with pytest.raises(ValueError, match="vmap_width must be an int >= 1, None or 'auto', got 'fast'"):
        Executor(quad_objective, SPACE, vmap_width="fast")
    with pytest.raises(TypeError, match="objective must be callable"):
        Executor("loss", SPACE)
    with pytest.raises(ValueError, match="max_batch must be an int >= 1 or None"):
        jt.tune(quad_objective, SPACE, trials=2, metric="loss", max_batch=-3, progress=False)


def test_every_bucket_compiles_before_the_first_chunk_runs(key):
    def objective(hp, key):
        return {"loss": jnp.sum(jnp.ones((hp["width"],))) * hp["x"] + 0 * jax.random.uniform(key)}

    space = jt.Space({"width": jt.Choice([2, 4, 8], static=True), "x": jt.Float(0.1, 1.0)})
    hp = space.sample(key, 24)
    ex = Executor(objective, space)
    chunks = ex.run(hp, jax.random.split(key, 24))
    next(chunks)
    assert ex.compiles == len(ex.trial_fn.buckets(hp)) == 3  # all submitted to the compile threads at once
    rest = list(chunks)
    assert ex.compiles == 3 and len(rest) == 2


def test_compiler_options_per_platform_leave_results_unchanged(key):
    from jaxtune.execute import COMPILER_OPTIONS

    hp = SPACE.sample(key, 8)
    keys = jax.random.split(key, 8)
    ex = Executor(quad_objective, SPACE)
    assert ex.compiler_options == COMPILER_OPTIONS.get(jax.devices()[0].platform, {})
    tuned, _ = collect(ex, hp, keys)
    plain, _ = collect(Executor(quad_objective, SPACE, compiler_options={}), hp, keys)
    np.testing.assert_allclose(tuned, plain, **F32)
    with pytest.raises(TypeError, match="compiler_options must be a dict of XLA options or 'auto', got 'fast'"):
        Executor(quad_objective, SPACE, compiler_options="fast")


def test_use_cpu_cores_makes_one_device_per_core_before_jax_starts():
    script = textwrap.dedent("""
        import jax, jaxtune as jt
        assert jt.use_cpu_cores(3)
        assert jax.device_count() == 3, jax.devices()
        assert not jt.use_cpu_cores(2)  # too late: JAX has started
        assert jt.Executor(lambda hp, key: hp["x"], jt.Space({"x": jt.Float(0, 1)})).num_devices == 3
    """)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=dict(env, JAX_PLATFORMS="cpu")
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not jt.use_cpu_cores()  # this process chose its device count already
    with pytest.raises(ValueError, match=r"n \(CPU devices\) must be an int >= 1, got 0"):
        jt.use_cpu_cores(0)


def test_use_cpu_cores_called_too_late_warns():
    script = textwrap.dedent("""
        import warnings, jax, jax.numpy as jnp
        import jaxtune as jt
        jnp.ones(1).block_until_ready()  # JAX has started
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            assert jt.use_cpu_cores(2) is False
        print([str(x.message) for x in w])
    """)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | {"JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "called after JAX started" in proc.stdout


def test_a_python_loop_over_steps_is_flagged_before_it_compiles():
    def unrolled(hp, key):
        w = jnp.zeros(())
        for _ in range(3000):  # 2 operations a step, all in the program
            w = w * hp["x"] + 1.0
        return {"loss": w}

    def scanned(hp, key):
        w, _ = jax.lax.scan(lambda w, _: (w * hp["x"] + 1.0, None), jnp.zeros(()), length=3000)
        return {"loss": w}

    space = jt.Space({"x": jt.Float(0.0, 0.5)})
    with pytest.warns(UserWarning, match="traced to 6000 operations outside any loop.*lax.scan"):
        Executor(unrolled, space).output_shapes(())
    Executor(scanned, space).output_shapes(())  # no warning (warnings are errors in the tests)


def test_matmul_flops_counts_every_product_once_per_loop_iteration():
    from jaxtune.execute import matmul_flops

    def f(x, w, k):
        y = x @ w  # 2 * 4 * 16 * 8 flops, once
        y, _ = jax.lax.scan(lambda c, _: (jnp.tanh(c @ w @ w.T), None), y @ w.T, None, length=10)
        conv = jax.lax.conv(k[None, None], k[None, None], (1, 1), "VALID")  # 1 output, 3x3 window
        return y, conv

    jaxpr = jax.make_jaxpr(f)(jnp.ones((4, 8)), jnp.ones((8, 16)), jnp.ones((3, 3)))
    per_iter = 2 * 4 * 16 * 8 + 2 * 4 * 8 * 16  # (c @ w) then (@ w.T)
    flops, count = matmul_flops(jaxpr)
    assert count == 1 + 1 + 10 * 2 + 1
    assert flops == 2 * 4 * 16 * 8 + 2 * 4 * 8 * 16 + 10 * per_iter + 2 * 9


def big_matmul_objective(hp, key):
    w = jax.random.normal(key, (256, 256)) * hp["lr"] * hp["b1"] + hp["n"]
    return {"loss": jnp.mean(jnp.tanh(w @ w @ w))}  # 2 * 256**3 = 3.4e7 flops a product


def test_auto_vmap_width_runs_large_trials_one_at_a_time_on_cpu(key, monkeypatch):
    from jaxtune.execute import default_vmap_width, platform

    monkeypatch.setattr(platform, "cpu_cores_per_device", lambda: 1.0)  # one device per core (the CLI's)
    small, big = Executor(quad_objective, SPACE), Executor(big_matmul_objective, SPACE)
    assert small.vmap_width == big.vmap_width == "auto"
    assert small.vmap_width_of(()) == 8  # tiny trials: vmapped in groups of 8 (VMAP_WIDTH)
    assert big.vmap_width_of(()) == 1  # large matmuls: one trial after another (SEQUENTIAL_FLOPS)
    assert default_vmap_width(jax.devices()[0]) == 8  # without a trial to judge: the platform's width
    # One device over several cores: XLA:CPU spreads a vmapped group over them, so groups of 8 stay.
    big_jaxpr = big.trial_fn.jaxpr(())
    assert default_vmap_width(jax.devices()[0], big_jaxpr, cores_per_device=2) == 8
    assert default_vmap_width(jax.devices()[0], big_jaxpr, cores_per_device=1) == 1

    class Gpu:  # on an accelerator every trial of a chunk is vmapped, whatever its size
        platform = "gpu"

    assert default_vmap_width(Gpu(), jax.make_jaxpr(lambda w: w @ w)(jnp.ones((512, 512)))) is None
    hp, keys = SPACE.sample(key, 16), jax.random.split(key, 16)
    got, _ = collect(big, hp, keys)
    want, _ = collect(Executor(big_matmul_objective, SPACE, vmap_width=None), hp, keys)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert big.layout()["vmap_width"] == "auto"
