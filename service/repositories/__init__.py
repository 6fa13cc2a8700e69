"""Signpost's repositories: small keyword-only functions per resource.

Each takes the database handle (`service.db.Database`) first and returns domain objects (ORM
rows, `ScenarioSet`, `Evidence`, small frozen dataclasses), never the API's dicts; the views
are in `service.views`.
"""
