"""The HTTP API (FastAPI): one router per resource, one error shape."""

from service.api.app import app_factory, create_app

__all__ = ["app_factory", "create_app"]
