"""OpenAPI links: from the routes that list or create things to the routes that take their ids.

A client reading the document (a generator, a fuzzer's stateful phase) learns from them that
``GET /v1/sets`` gives the ``set_id`` of every ``/v1/sets/{set_id}/…`` operation, that a listed
or created observation, review, alert rule or key gives the id its routes take, and that a
queued, replayed or published fit gives ``GET /v1/fits/{fit_id}`` and its artifact, and that a
set's resolution names one of its scenarios and a date. Two tables, `SOURCES` and `BODIES`,
applied to the document once every router is included: a route added later that takes
``{set_id}`` (or another listed id) is linked with no edit here.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

__all__ = ["BODIES", "SOURCES", "add_links", "install_links"]

SOURCES: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    # method, path, status of the response that carries the id, the path parameter it fills,
    # and where in that response the id is (one link per place)
    ("get", "/v1/sets", "200", "set_id", ("$response.body#/0/id", "$response.body#/1/id")),
    ("get", "/v1/observations", "200", "observation_id", ("$response.body#/items/0/id",)),
    ("post", "/v1/observations", "201", "observation_id", ("$response.body#/id",)),
    ("get", "/v1/reviews", "200", "review_id", ("$response.body#/items/0/id",)),
    ("post", "/v1/reviews", "201", "review_id", ("$response.body#/id",)),
    ("post", "/v1/fits", "202", "fit_id", ("$response.body#/fit_id",)),
    ("get", "/v1/sets/{set_id}/posterior", "200", "fit_id", ("$response.body#/fit_id",)),
    ("get", "/v1/sets/{set_id}/replay", "202", "fit_id", ("$response.body#/fit_id",)),
    ("get", "/v1/alert-rules", "200", "rule_id", ("$response.body#/items/0/id",)),
    ("post", "/v1/alert-rules", "201", "rule_id", ("$response.body#/id",)),
    ("get", "/v1/keys", "200", "key_id", ("$response.body#/items/0/id",)),
)
"""Where ids come from: ``(method, path, status, parameter, expressions)``."""

BODIES: tuple[tuple[str, str, str, str, str, dict[str, str], dict[str, Any]], ...] = (
    # a set's resolution names one of its scenarios and a date from its start on
    ("get", "/v1/sets", "200", "post", "/v1/sets/{set_id}/resolution",
     {"set_id": "$response.body#/0/id"},
     {"scenario": "$response.body#/0/scenarios/0/id", "date": "$response.body#/0/start"}),
)
"""Links that also fill a request body: ``(method, path, status, target method, target path,
parameters, request body)``."""


def add_links(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` (an OpenAPI document, changed in place) with the links of `SOURCES`."""
    paths = document.get("paths", {})
    for method, path, status, parameter, expressions in SOURCES:
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
        if response is None:  # a route not (or no longer) served
            continue
        links = response.setdefault("links", {})
        for target_path, item in paths.items():
            if "{" + parameter + "}" not in target_path:
                continue
            for target in item.values():
                for n, expression in enumerate(expressions):
                    name = target["operationId"] + (f"_{n}" if len(expressions) > 1 else "")
                    links[name] = {"operationId": target["operationId"],
                                   "parameters": {parameter: expression}}
    for method, path, status, target_method, target_path, parameters, body in BODIES:
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
        target = paths.get(target_path, {}).get(target_method)
        if response is not None and target is not None:
            response.setdefault("links", {})[target["operationId"] + "_body"] = {
                "operationId": target["operationId"], "parameters": parameters,
                "requestBody": body}
    return document


def install_links(app: FastAPI) -> None:
    """Serve ``app``'s document with the links (built once, on first request, like FastAPI's)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = add_links(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
