"""Typed dependencies: the services, the store, the settings, API keys by role, JSON bodies.

Route signatures stay short: ``def handler(store: StoreDep, key: AnalystKey, body: JsonObject)``.

Roles are ordered reader < analyst < admin. Reads are open unless
``SIGNPOST_REQUIRE_READ_KEY`` is set, then they need any valid key. A missing, unknown, revoked
or expired key is 401, a key whose role is too low is 403. Writes take an `Actor` (`writer`):
the key, checked against its rate limit before the handler runs, as the audit log names it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from service.api.errors import refusal
from service.api.limits import check_read
from service.audit import Actor
from service.context import Services
from service.db import Database
from service.errors import BadRequest, Forbidden, Unauthorized
from service.repositories.keys import ROLES, ApiKey, verify_key
from service.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer sp_...`")


async def get_services(request: Request) -> Services:
    """The process's services, built by the app's lifespan."""
    return request.app.state.services


async def get_store(services: Annotated[Services, Depends(get_services)]) -> Database:
    """The store."""
    return services.store


async def get_settings(services: Annotated[Services, Depends(get_services)]) -> Settings:
    """The settings the app was started with."""
    return services.settings


ServicesDep = Annotated[Services, Depends(get_services)]
StoreDep = Annotated[Database, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


# -- API keys ---------------------------------------------------------------------------

def _authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None,
                  store: Database) -> ApiKey:
    if credentials is None:
        if request.headers.get("authorization"):
            raise Unauthorized("the Authorization header must be 'Bearer <key>'",
                               field="Authorization")
        raise Unauthorized("this needs an API key: send 'Authorization: Bearer <key>' "
                           "(create one with `signpost keys create --role ROLE`)",
                           field="Authorization")
    key = verify_key(store, secret=credentials.credentials)
    if key is None:
        raise Unauthorized("unknown or revoked API key, or an expired one (`signpost keys "
                           "list` shows each key's state)", field="Authorization",
                           code="invalid_key")
    return key


def require_role(role: str) -> Callable[..., ApiKey]:
    """A dependency that returns the caller's key if its role is ``role`` or higher."""
    needed = ROLES.index(role)

    def dependency(request: Request, store: StoreDep,
                   credentials: Annotated[HTTPAuthorizationCredentials | None,
                                          Depends(_bearer)]) -> ApiKey:
        key = _authenticate(request, credentials, store)
        if ROLES.index(key.role) < needed:
            article = "an" if key.role[0] in "aeiou" else "a"
            raise Forbidden(f"this needs the {role} role; key {key.prefix}… is {article} "
                            f"{key.role} key")
        return key

    dependency.__name__ = f"require_{role}"
    return dependency


async def read_access(request: Request, store: StoreDep, settings: SettingsDep,
                      credentials: Annotated[HTTPAuthorizationCredentials | None,
                                             Depends(_bearer)]) -> ApiKey | None:
    """Open reads (None), or any valid key when ``require_read_key`` is set.

    Async, so an open read costs no thread hop; a key lookup goes to the thread pool. Open
    reads count against ``SIGNPOST_RATE_LIMIT_READS`` by client address when it is set.
    """
    if not settings.require_read_key:
        if settings.rate_limit_reads:
            await check_read(request)
        return None
    return await run_in_threadpool(_authenticate, request, credentials, store)


ReadAccess = Annotated[ApiKey | None, Depends(read_access)]
AnalystKey = Annotated[ApiKey, Depends(require_role("analyst"))]
AdminKey = Annotated[ApiKey, Depends(require_role("admin"))]


def who(key: ApiKey) -> str:
    """How a key is recorded as the author of a change: its name, else its prefix."""
    return key.name or key.prefix


# -- writes: a key of the role, within its rate limit, as the audit log's actor ----------

def actor_of(request: Request, key: ApiKey | None) -> Actor:
    """Who is asking (a key, or ``anonymous``) and from where, for the audit log."""
    return Actor(name=who(key) if key is not None else "anonymous",
                 key_id=key.id if key is not None else None,
                 client=request.client.host if request.client else None,
                 request_id=request.headers.get("x-request-id"))


def writer(role: str, limit: str) -> Callable[..., Actor]:
    """A dependency: the caller's key (``role`` or higher) as an `Actor`, within ``limit``.

    ``limit`` is ``writes`` or ``fits`` (`service.api.limits`): checked after the key is
    verified and before the handler runs, so a request over it (429) stores nothing.
    """
    authorized = require_role(role)

    # a default, not Annotated: the annotations are strings, read in the module's globals
    def dependency(request: Request, key: ApiKey = Depends(authorized)) -> Actor:  # noqa: B008
        request.app.state.rate_limits.check(limit, key.id)
        return actor_of(request, key)

    dependency.__name__ = f"{role}_{limit}"
    return dependency


AnalystWrite = Annotated[Actor, Depends(writer("analyst", "writes"))]
AdminWrite = Annotated[Actor, Depends(writer("admin", "writes"))]
AnalystFitRequest = Annotated[Actor, Depends(writer("analyst", "fits"))]
AdminFitRequest = Annotated[Actor, Depends(writer("admin", "fits"))]


# -- JSON bodies ------------------------------------------------------------------------

class _NonFinite(str):
    """A NaN or ±Infinity token met while parsing (JSON has no such numbers)."""


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise BadRequest(f"{key}: given twice in one object", field=key,
                             code="invalid_json")
        result[key] = value
    return result


def _non_finite(value: Any) -> str | None:
    if isinstance(value, _NonFinite):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # a literal too large for a float, such as 1e999
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            if (found := _non_finite(item)) is not None:
                return found
    return None


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Parse a request body that must be one JSON object of finite values.

    Raises
    ------
    BadRequest
        ``invalid_json`` for an empty or malformed body or a key given twice; ``invalid`` for
        a body that is not an object, or a NaN/Infinity anywhere (naming the top-level field).

    """
    if not raw.strip():
        raise BadRequest("the body is empty; send a JSON object", code="invalid_json")
    try:
        data = json.loads(raw, parse_constant=_NonFinite, object_pairs_hook=_refuse_duplicates)
    except BadRequest:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, too deep
        raise BadRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(data, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean",
                type(None): "null"}.get(type(data), "a number")
        raise BadRequest(f"the body must be a JSON object of fields, got {kind}")
    for key, value in data.items():
        if (token := _non_finite(value)) is not None:
            raise BadRequest(f"{key}: {token} is not a number; send a finite number",
                             field=key)
    return data


async def json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object (see `parse_json_object`)."""
    return parse_json_object(await request.body())


JsonObject = Annotated[dict[str, Any], Depends(json_object)]


def json_model[M: BaseModel](model: type[M]) -> Callable[[Request], Awaitable[M]]:
    """A dependency that parses the body strictly and validates it as ``model``.

    The body is a typed parameter this way while the strict parser (`parse_json_object`:
    duplicate keys, NaN, the messages naming them) stays in front of pydantic; `body_schema`
    documents it in the OpenAPI document.
    """

    async def dependency(request: Request) -> M:
        data = parse_json_object(await request.body())
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise refusal(exc.errors(), tuple(model.model_fields), every=False) from None

    dependency.__name__ = f"{model.__name__.lower()}_body"
    return dependency


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a body that a `json_model` dependency parses.

    The nested models are written in place: a ``#/$defs/...`` reference would be resolved
    against the root of the OpenAPI document, which has no ``$defs`` (a client generator or a
    fuzzer could make no what-if body, whose observations and reviews are nested models).
    """
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": inline_defs(model.model_json_schema())}}}}


def inline_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema with each ``#/$defs/`` reference replaced by its (non-recursive) target."""
    defs = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref", "")
        if ref.startswith("#/$defs/"):
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            return resolve({**defs[ref.removeprefix("#/$defs/")], **siblings})
        return {k: resolve(v) for k, v in node.items() if k != "$defs"}

    return resolve(schema)


IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=200,
    description="Makes a retry return the first result instead of storing a second row")]


# -- bounded path parameters (an unbounded one reaches the database: docs/hardening.md) --

SetId = Annotated[str, Path(min_length=1, max_length=100, description="a scenario set id",
                            examples=["sino-russian-convergence", "world-order-2035"])]
"""The ``{set_id}`` of a route; the examples are the bundled sets' ids."""
