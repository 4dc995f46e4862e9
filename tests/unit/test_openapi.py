"""The committed OpenAPI document is the one the application serves."""

import json
from pathlib import Path

from audience.api.openapi import render

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_committed_openapi_is_current():
    assert COMMITTED.exists(), "run `make openapi` to write docs/openapi.json"
    assert COMMITTED.read_text() == render(), "docs/openapi.json is stale: run `make openapi`"


def test_served_at_openapi_json_and_docs(org):
    served = org.client.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == json.loads(render())
    assert org.client.get("/docs").status_code == 200
