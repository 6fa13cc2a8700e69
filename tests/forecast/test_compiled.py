"""The cacheable nutpie callbacks: the same log density, gradient and draws expansion as the
PyTensor functions they wrap, on swapped-in evidence of a new shape too; loaded, not compiled,
by a second process."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from forecast import DEFAULT_CACHE, set_evidence
from forecast.model import EvidenceArrays
from indicators import load_catalog, read_observations_csv
from priors import load_bundled_sets

from .conftest import simulate

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "indicators" / "data" / "sample_observations.csv"
DOUBLE_P = ctypes.POINTER(ctypes.c_double)


def _pointer(array: np.ndarray):
    return array.ctypes.data_as(DOUBLE_P)


def callback_logp(nutpie_model, x):
    """(return code, log density, gradient) from the compiled C callback."""
    grad, logp = np.zeros(nutpie_model.n_dim), np.zeros(())
    code = nutpie_model.compiled_logp_func.ctypes(
        nutpie_model.n_dim, _pointer(x), _pointer(grad), _pointer(logp),
        ctypes.c_void_p(nutpie_model.user_data.ctypes.data))
    return code, float(logp), grad


def callback_expand(nutpie_model, x):
    out = np.zeros(nutpie_model.n_expanded)
    code = nutpie_model.compiled_expand_func.ctypes(
        nutpie_model.n_dim, nutpie_model.n_expanded, _pointer(x), _pointer(out),
        ctypes.c_void_p(nutpie_model.user_data.ctypes.data))
    return code, out


def reference(nutpie_model, data, x):
    """PyTensor's own functions on ``data``: (log density, gradient, expanded draw)."""
    functions = (nutpie_model.logp_func, nutpie_model.expand_func)
    shared = {v for f in functions for v in f.get_shared()}
    saved = {v: v.get_value() for v in shared}
    try:
        for v in shared:
            v.set_value(data[v.name])
        logp, grad = nutpie_model.logp_func(x)
        (expanded,) = nutpie_model.expand_func(x)
        return float(logp), np.asarray(grad), np.asarray(expanded)
    finally:
        for v, value in saved.items():
            v.set_value(value)


def _two_evidences(kind, all_kinds_set):
    """(scenario set, dynamic, evidence, later evidence with more periods)."""
    if kind == "static":
        scenario_set = all_kinds_set
        rng = np.random.default_rng(3)
        return (scenario_set, False, simulate(scenario_set, 1, 12, rng),
                simulate(scenario_set, 2, 20, rng))
    scenario_set = load_bundled_sets()["sino-russian-convergence"]
    rows, _ = read_observations_csv(SAMPLE, load_catalog(), today=date(2025, 12, 31))
    return (scenario_set, True, set_evidence(scenario_set, rows, as_of=date(2024, 12, 31)),
            set_evidence(scenario_set, rows, as_of=date(2025, 12, 31)))


@pytest.mark.parametrize("kind", ["static", pytest.param("dynamic", marks=pytest.mark.slow)])
def test_callbacks_equal_the_pytensor_functions_they_wrap(kind, model_cache, all_kinds_set):
    scenario_set, dynamic, first, later = _two_evidences(kind, all_kinds_set)
    cache = model_cache if kind == "static" else DEFAULT_CACHE  # test_dynamic reuses it
    compiled, _ = cache.get(scenario_set, first, dynamic=dynamic)
    rng = np.random.default_rng(0)
    for evidence in (first, later):
        data = {name: value for name, value in
                EvidenceArrays.select(scenario_set, evidence).as_data().items()
                if name in compiled.data_names}
        nutpie_model = compiled.nutpie_model.with_data(**data)
        for _ in range(3):
            x = rng.normal(scale=0.7, size=nutpie_model.n_dim)
            code, logp, grad = callback_logp(nutpie_model, x)
            ref_logp, ref_grad, ref_expanded = reference(nutpie_model, data, x)
            assert code == 0
            assert logp == pytest.approx(ref_logp, rel=1e-12)
            np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-12)
            code, expanded = callback_expand(nutpie_model, x)
            assert code == 0
            np.testing.assert_allclose(expanded, ref_expanded, rtol=1e-12)
    # a point of the wrong size is refused, not read past its end
    wrong = np.zeros(nutpie_model.n_dim + 1)
    assert nutpie_model.compiled_logp_func.ctypes(
        nutpie_model.n_dim + 1, _pointer(wrong), _pointer(wrong), _pointer(np.zeros(())),
        ctypes.c_void_p(nutpie_model.user_data.ctypes.data)) == -1


LOAD_IN_A_NEW_PROCESS = textwrap.dedent("""
    import numpy as np
    from forecast import ModelCache
    from priors import parse_scenario_set
    from tests.forecast.conftest import ALL_KINDS, simulate
    scenario_set = parse_scenario_set(ALL_KINDS, source="all-kinds.yaml")
    evidence = simulate(scenario_set, 1, 12, np.random.default_rng(3))
    compiled, _ = ModelCache().get(scenario_set, evidence)
    print(compiled.nutpie_model.compiled_logp_func.cache_hits,
          compiled.nutpie_model.compiled_expand_func.cache_hits)
""")


def test_a_new_process_loads_the_callbacks_instead_of_compiling(model_cache, all_kinds_set):
    scenario_set, _, first, _ = _two_evidences("static", all_kinds_set)
    model_cache.get(scenario_set, first)  # this process compiled (or loaded) and saved them
    out = subprocess.run([sys.executable, "-c", LOAD_IN_A_NEW_PROCESS], cwd=ROOT, env=os.environ,
                         capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.split() == ["1", "1"], out.stderr


def test_an_edit_to_the_regime_op_source_changes_its_cache_key(monkeypatch):
    """PyTensor keys a cached graph on its Ops' types and props, not on the Ops' numba code."""
    from pytensor.link.numba.dispatch.basic import numba_funcify_and_cache_key

    from forecast import ops

    op = ops.RegimeHMM((0, 0), (0, 1))
    _, key = numba_funcify_and_cache_key(op)
    monkeypatch.setattr(ops, "SOURCE_VERSION", ops.SOURCE_VERSION + 1)
    _, edited = numba_funcify_and_cache_key(op)
    assert key is not None and edited is not None and key != edited


@pytest.mark.slow
def test_the_log_density_gives_the_same_bits_on_every_thread_at_once():
    """nutpie evaluates the density of several chains at once, each on a thread of its pool.
    With LLVM's vectorizers on, the gradient's last bits depended on where the thread's
    allocator put the temporaries (1 to 5 of 12,000 concurrent calls differed, by 4e-16 to
    7e-14), so a seeded chain depended on which thread ran it (forecast/_numba.py)."""
    import threading

    scenario_set, dynamic, _, evidence = _two_evidences("dynamic", None)
    compiled, _ = DEFAULT_CACHE.get(scenario_set, evidence, dynamic=dynamic)
    data = {name: value for name, value in
            EvidenceArrays.select(scenario_set, evidence).as_data().items()
            if name in compiled.data_names}
    nutpie_model = compiled.nutpie_model.with_data(**data)
    rng = np.random.default_rng(0)
    points = [rng.uniform(-1, 1, nutpie_model.n_dim) for _ in range(20)]
    expected = [callback_logp(nutpie_model, x) for x in points]
    differing = []

    def evaluate(seed):
        order = np.random.default_rng(seed).integers(len(points), size=4000)
        for i in order:
            code, logp, grad = callback_logp(nutpie_model, points[i].copy())
            if (code, logp) != expected[i][:2] or not np.array_equal(grad, expected[i][2]):
                differing.append(int(i))

    for batch in range(3):  # fresh threads each time: a new thread's allocator history
        threads = [threading.Thread(target=evaluate, args=(10 * batch + t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert differing == []
