"""The polling path (`service.api.polls`): a cached posterior sent before routing.

It must answer exactly as the route does — body, ETag, 304, headers — and leave everything
else to the route: a set not cached yet, an unknown set (the error shape), keys required for
reads. Shown by making the route unreachable once the cache is filled (a dependency override
that fails): cached polls still answer, the rest get the route's errors.
"""

from __future__ import annotations

from datetime import date

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.api import create_app
from service.api.deps import get_services
from service.api.responses import render
from service.repositories.fits import create_fit
from service.repositories.keys import create_key
from service.repositories.observations import add_observation
from service.repositories.sets import load_bundled_sets
from service.settings import Settings
from tests.service.support import TestClient

TODAY = date(2025, 12, 31)
WORLD = "world-order-2035"


def _app(tmp_path, **overrides):
    settings = Settings(var_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
                        scheduler=False, worker="inline", today=TODAY.isoformat(),
                        dynamic=False, **overrides)
    return create_app(settings)


def _publish(app) -> None:
    services = app.state.services
    load_bundled_sets(services.store)
    add_observation(services.store, data={"indicator": "sanctions_relief_russia",
                                          "date": "2025-05-02", "grade": "B2", "value": 1})
    fit_id = create_fit(services.store, set_id=WORLD, requested_by="test")
    assert services.runner.run_fit(fit_id)["status"] == "published"


def _unreachable():
    raise RuntimeError("the route was reached")


def _poll_count(client) -> float:
    """Answered posterior polls (200 and 304) in the app's request metrics."""
    return sum(sample.value
               for family in text_string_to_metric_families(client.get("/metrics").text)
               for sample in family.samples
               if sample.name == "signpost_request_duration_seconds_count"
               and sample.labels["route"] == "/v1/sets/{set_id}/posterior"
               and sample.labels["status"] in ("200", "304"))


def test_cached_polls_answer_as_the_route_does_without_reaching_it(tmp_path):
    app = _app(tmp_path)
    with TestClient(app, raise_server_exceptions=False) as client:
        _publish(app)
        path = f"/v1/sets/{WORLD}/posterior"
        by_route = client.get(path)  # not cached yet: the route reads the database
        assert by_route.status_code == 200
        payload = app.state.services.posterior_cache.peek(
            WORLD, app.state.services.store.clock(), app.state.services.settings.stale_after)
        body, etag = render(payload)
        assert by_route.content == body and by_route.headers["etag"] == etag
        counted = _poll_count(client)

        app.dependency_overrides[get_services] = _unreachable
        cached = client.get(path)
        assert cached.status_code == 200 and cached.content == body
        for header in ("etag", "cache-control", "content-type", "content-length"):
            assert cached.headers[header] == by_route.headers[header], header
        again = client.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == etag and "content-type" not in again.headers
        weak = client.get(path, headers={"If-None-Match": f'"other", W/{etag}'})
        assert weak.status_code == 304
        assert client.get(path, headers={"If-None-Match": '"other"'}).status_code == 200
        # what it does not serve goes to the route (here unreachable: a 500 in the one shape)
        unknown = client.get("/v1/sets/no-such-set/posterior")
        assert unknown.status_code == 500 and unknown.json()["error"]["code"]
        app.dependency_overrides.clear()
        # the metrics label the cached polls by the route they stand for
        assert _poll_count(client) >= counted + 4


def test_unknown_sets_and_read_keys_keep_the_routes_answers(tmp_path):
    app = _app(tmp_path, require_read_key=True)
    with TestClient(app) as client:
        _publish(app)
        path = f"/v1/sets/{WORLD}/posterior"
        reader = {"Authorization": f"Bearer {create_key(app.state.services.store, role='reader')}"}
        assert client.get(path, headers=reader).status_code == 200  # cached now
        refused = client.get(path)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["field"] == "Authorization"
        assert client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
        missing = client.get("/v1/sets/no-such-set/posterior", headers=reader)
        assert missing.status_code == 404 and missing.json()["error"]["field"] == "set_id"


@pytest.mark.parametrize("path", ["/v1/sets//posterior", "/v1/sets/a/b/posterior"])
def test_paths_that_are_not_a_set_id_go_to_the_router(tmp_path, path):
    app = _app(tmp_path)
    with TestClient(app) as client:
        _publish(app)
        client.get(f"/v1/sets/{WORLD}/posterior")
        assert client.get(path).status_code == 404
