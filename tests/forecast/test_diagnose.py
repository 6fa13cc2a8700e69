"""The gate's numbers are ArviZ's: one stacked array call equals ArviZ per variable."""

from __future__ import annotations

import arviz as az
import numpy as np

from forecast import GateSettings, diagnose


def _run(rng, stuck_chain: bool = False, divergent: int = 0):
    walk = rng.normal(size=(4, 500, 3)).cumsum(axis=1) * 0.05 + rng.normal(size=(4, 500, 3))
    if stuck_chain:
        walk[0] += 5.0
    probability = rng.dirichlet(np.ones(4), size=(4, 500))
    probability[..., 3] = probability[..., 3] * 0 + 0.25  # an exact (constant) probability
    probability[..., :3] *= 0.75 / probability[..., :3].sum(axis=-1, keepdims=True)
    diverging = np.zeros((4, 500), dtype=bool)
    diverging[0, :divergent] = True
    return az.from_dict({"posterior": {"rate": walk, "scenario_probability": probability},
                         "sample_stats": {"diverging": diverging}})


def test_diagnostics_equal_arviz_per_variable():
    datatree = _run(np.random.default_rng(0))
    diagnostics, mcse = diagnose(datatree, GateSettings())
    posterior = datatree["posterior"]
    varying = az.from_dict({"posterior": {  # ArviZ per variable, the constant column left out
        "rate": posterior["rate"].values,
        "scenario_probability": posterior["scenario_probability"].values[..., :3]}})
    rhat = az.rhat(varying)
    ess = az.ess(varying, method="bulk")
    expected_mcse = az.mcse(varying)["scenario_probability"].values
    assert diagnostics.max_rhat == round(max(float(rhat[v].max()) for v in rhat.data_vars), 6)
    assert diagnostics.min_ess_bulk == round(min(float(ess[v].min()) for v in ess.data_vars), 1)
    np.testing.assert_allclose(mcse[:3], expected_mcse, rtol=1e-12)
    assert mcse[3] == 0.0  # identical in every draw: exact


def test_gate_names_each_failure():
    diagnostics, _ = diagnose(_run(np.random.default_rng(1), stuck_chain=True, divergent=3),
                              GateSettings())
    assert not diagnostics.passed
    reasons = " ".join(diagnostics.failures)
    assert "r_hat" in reasons and "3 divergences" in reasons
