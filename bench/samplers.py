"""(e) Effective samples per second of the scenario probabilities, per sampler, on the dynamic
convergence model (learned transitions and per-scenario parameters) with the sample observations.

Run: ``make bench-samplers``. nutpie runs the compiled model once warm (with_data), as the
worker does; PyMC's own NUTS (``nuts_sampler="pymc"``) compiles on every call, timed with and
without that compile. JAX samplers (numpyro, blackjax) are not measured: JAX is not a
dependency here (docs/design.md, "Why not NUTS over everything"; numpyro was measured at
15–26 s per fit of a scan-based model).
"""

from __future__ import annotations

import time

import arviz as az
import numpy as np
import nutpie
import pymc as pm

from bench.common import SAMPLE, TODAY, hardware
from forecast import ModelCache, fit, set_evidence
from forecast.fit import filtered_draws
from forecast.model import EvidenceArrays
from indicators import load_catalog, read_observations_csv
from priors import load_bundled_sets

DRAWS, TUNE, CHAINS = 1800, 300, 4


def min_ess(scenario_set, posterior, arrays) -> float:
    alpha = filtered_draws(scenario_set, arrays, posterior)[1][:, -1, :]
    n_chains = posterior.sizes["chain"]
    chained = alpha.reshape(n_chains, -1, alpha.shape[-1])
    return float(np.min(az.ess(chained, method="bulk")))


def main() -> None:
    print(hardware())
    scenario_set = load_bundled_sets()["sino-russian-convergence"]
    observations, _ = read_observations_csv(SAMPLE, load_catalog(), today=TODAY)
    evidence = set_evidence(scenario_set, observations, as_of=TODAY)
    cache = ModelCache()
    fit(scenario_set, evidence, cache=cache)  # compile once
    compiled = next(iter(cache._models.values()))
    model = compiled.model
    arrays = EvidenceArrays.select(scenario_set, evidence)
    print(f"\n(e) ESS/s of the scenario probabilities, {CHAINS} chains × {DRAWS} draws "
          f"(+{TUNE} tuning)")
    rows = []
    started = time.perf_counter()
    trace = nutpie.sample(compiled.nutpie_model, draws=DRAWS, tune=TUNE, chains=CHAINS,
                          cores=2, seed=1, progress_bar=False)
    seconds = time.perf_counter() - started
    ess = min_ess(scenario_set, trace["posterior"], arrays)
    rows.append(("nutpie (numba, compiled once)", seconds, ess))
    with model:
        started = time.perf_counter()
        trace = pm.sample(draws=DRAWS, tune=TUNE, chains=CHAINS, cores=2, random_seed=1,
                          nuts_sampler="pymc", progressbar=False,
                          compute_convergence_checks=False)
        seconds = time.perf_counter() - started
    ess = min_ess(scenario_set, trace["posterior"], arrays)
    rows.append(("PyMC NUTS (compiles per call)", seconds, ess))
    baseline = rows[1][2] / rows[1][1]
    for name, seconds, ess in rows:
        print(f"  {name:32s} {seconds:7.2f} s  min ESS {ess:7.0f}  ESS/s {ess / seconds:8.0f}"
              f"  ratio to PyMC NUTS {ess / seconds / baseline:5.1f}×")


if __name__ == "__main__":
    main()
