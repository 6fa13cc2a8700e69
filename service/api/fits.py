"""Fits: queue one (admin), follow its status, download a published one's draws (NetCDF).

Sampling never runs in a request handler.

A queued fit is run by the scheduler's drain job, in this process (``SIGNPOST_SCHEDULER``) or
in the one scheduler process of a compose deployment; with neither, it stays queued.
"""

from __future__ import annotations

import pathlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response

from service.api.deps import AdminFitRequest, ReadAccess, StoreDep, body_schema, json_model
from service.api.downloads import NETCDF_OK, netcdf_download
from service.api.errors import ERROR_RESPONSES
from service.api.models import Fit, FitQueued, FitRequest
from service.api.responses import finite
from service.errors import Conflict, NotFound
from service.repositories import audit, fits, sets
from service.views import fit_dict

router = APIRouter(prefix="/fits", tags=["fits"],
                   responses={s: ERROR_RESPONSES[s] for s in (401, 404)})


FitRequestBody = Annotated[FitRequest, Depends(json_model(FitRequest))]


@router.post("", status_code=202, openapi_extra=body_schema(FitRequest),
             response_model=FitQueued,
             responses={s: ERROR_RESPONSES[s] for s in (403, 413, 422)})
def queue_fit(actor: AdminFitRequest, body: FitRequestBody, store: StoreDep,
              response: Response) -> dict[str, Any]:
    """Queue a fit of a set: 202 with its id; the scheduler's worker runs it.

    A fit of the set that is still queued (not yet started, so it will read the newest
    evidence) is returned instead of queueing a second one.
    """
    sets.get_set(store, set_id=body.set_id)
    pending = fits.pending_fit(store, set_id=body.set_id)
    if pending is not None and pending.status == "queued":
        fit_id = pending.id
        audit.record_now(store, actor=actor, action="fit.request", target=f"fit:{fit_id}",
                         detail={"set_id": body.set_id, "kind": "live", "as_of": None,
                                 "reused": True})
    else:
        fit_id = fits.create_fit(store, set_id=body.set_id, requested_by=actor.name,
                                 actor=actor)
    response.headers["Location"] = f"/v1/fits/{fit_id}"
    return {"fit_id": fit_id, "set_id": body.set_id, "status": "queued"}


@router.get("/{fit_id}", response_model=Fit)
def get_fit(fit_id: Annotated[str, Path(max_length=100)], store: StoreDep,
            _: ReadAccess) -> dict[str, Any]:
    """A fit's status (queued, running, published, rejected, failed), timings, diagnostics."""
    return finite(fit_dict(fits.get_fit(store, fit_id=fit_id)))


@router.get("/{fit_id}/artifact", response_class=Response,
            responses=NETCDF_OK | {409: ERROR_RESPONSES[409]})
def get_artifact(fit_id: Annotated[str, Path(max_length=100)], store: StoreDep,
                 _: ReadAccess) -> Response:
    """A published fit's draws: its ArviZ DataTree as NetCDF (``xarray.open_datatree``).

    404 ``no_artifact`` for a fit that kept none (rejected, failed, or its file removed);
    409 ``not_finished`` while it is queued or running.
    """
    row = fits.get_fit(store, fit_id=fit_id)
    if row.status in ("queued", "running"):
        raise Conflict(f"fit {fit_id} is {row.status}; its artifact is written when it is "
                       f"published (poll GET /v1/fits/{fit_id})", field="fit_id",
                       code="not_finished")
    if row.status != "published" or not row.artifact:
        reason = row.reason or "no reason recorded"
        raise NotFound(f"fit {fit_id} is {row.status} ({reason}); only a published fit keeps "
                       "an artifact", field="fit_id", code="no_artifact")
    path = pathlib.Path(row.artifact)
    if not path.is_file():
        raise NotFound(f"the artifact of fit {fit_id} is no longer on disk ({path.name} was "
                       "removed); refit the set for a new one", field="fit_id",
                       code="no_artifact")
    return netcdf_download(path, f"{row.set_id}-{fit_id}.nc")
