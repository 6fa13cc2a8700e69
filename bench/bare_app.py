"""The baseline of the HTTP benchmark: a bare FastAPI endpoint returning a constant."""

from fastapi import FastAPI

app = FastAPI()
CONSTANT = {"set_id": "constant", "scenarios": [{"id": "a", "probability": 0.5}]}


@app.get("/const")
def constant() -> dict:
    """A constant body (a sync handler, like Signpost's)."""
    return CONSTANT
