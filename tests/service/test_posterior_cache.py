"""The hot read path: every replica serves a new fit within one cache polling interval."""

from __future__ import annotations

import time

import pytest

from forecast import FitSettings
from service.api import create_app
from service.repositories.fits import create_fit
from service.repositories.observations import add_observation
from service.repositories.sets import load_bundled_sets
from service.settings import Settings
from tests.service.support import TestClient

pytestmark = pytest.mark.slow
WORLD = "world-order-2035"


def test_a_second_replica_sees_a_new_fit_within_one_poll(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    common = dict(database_url=url, scheduler=False, worker="inline", today="2025-12-31",
                  cache_poll=0.2)
    first = create_app(Settings(var_dir=tmp_path / "a", **common))
    second = create_app(Settings(var_dir=tmp_path / "b", **common))
    with TestClient(first) as a, TestClient(second) as b:
        services = first.state.services
        load_bundled_sets(services.store)
        services.runner.fit_settings = FitSettings(dynamic=False)
        old = services.runner.run_fit(create_fit(services.store, set_id=WORLD,
                                                 requested_by="test"))["fit_id"]
        assert b.get(f"/v1/sets/{WORLD}/posterior").json()["fit_id"] == old  # now cached in b
        add_observation(services.store, data={"indicator": "joint_exercise", "date": "2025-11-03"})
        new = services.runner.run_fit(create_fit(services.store, set_id=WORLD,
                                                 requested_by="test"))["fit_id"]
        # the publishing replica invalidated its own entry at once
        assert a.get(f"/v1/sets/{WORLD}/posterior").json()["fit_id"] == new
        deadline = time.monotonic() + 0.2 * 10
        seen = b.get(f"/v1/sets/{WORLD}/posterior").json()["fit_id"]
        while seen != new and time.monotonic() < deadline:
            time.sleep(0.05)
            seen = b.get(f"/v1/sets/{WORLD}/posterior").json()["fit_id"]
        assert seen == new
