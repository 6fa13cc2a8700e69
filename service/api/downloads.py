"""Downloads: a listing as CSV (``?format=csv``) and a fit's NetCDF file, documented for OpenAPI.

A CSV is served as ``text/csv; charset=utf-8`` with ``Content-Disposition: attachment``; a
listing's CSV is streamed (its iterator runs in the thread pool, one database page at a time).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Query
from fastapi.responses import FileResponse, Response, StreamingResponse

__all__ = ["NETCDF_OK", "Format", "csv_download", "csv_ok", "netcdf_download"]

Format = Annotated[Literal["json", "csv"], Query(
    alias="format", description="`json` (the default) or `csv`: every matching row, as an "
                                "attachment (docs/exports.md)")]
"""The ``format`` query parameter of a route that also serves CSV."""


def csv_ok(description: str, model: type | None = None) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route whose 200 is JSON or, with ``format=csv``, CSV.

    The JSON's schema is ``model``'s, else the route's response model's.
    """
    return {200: {"description": description,
                  "content": {"text/csv": {"schema": {"type": "string"}}},
                  **({"model": model} if model is not None else {})}}


NETCDF_OK: dict[int | str, dict[str, Any]] = {200: {
    "description": "The fit's ArviZ DataTree as a NetCDF-4 (HDF5) file",
    "content": {"application/x-netcdf": {"schema": {"type": "string", "format": "binary"}}}}}
"""``responses=`` of the artifact route."""


def csv_download(content: str | Iterable[str], filename: str) -> Response:
    """A CSV attachment: text at once, or an iterator of chunks streamed as they come."""
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if isinstance(content, str):
        return Response(content, media_type="text/csv", headers=headers)
    return StreamingResponse(content, media_type="text/csv", headers=headers)


def netcdf_download(path: Path, filename: str) -> FileResponse:
    """A NetCDF file as an attachment."""
    return FileResponse(path, media_type="application/x-netcdf", filename=filename)
