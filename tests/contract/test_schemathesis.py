"""Property-based calls to every operation of the OpenAPI document: with a valid key, never a 5xx; with
another org's key on the victim org's real ids, never a 5xx, never a 2xx, never the victim's data, and
the victim's objects named by the path read the same afterwards."""

import itertools
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from audience.api.app import create_app
from tests.contract.surface import MARKER, PUBLIC, path_params, read

# The application is stateless; each test's fixtures provide the stack and the keys.
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(max_body_bytes=1 << 20))
# Public operations name no org's objects: the one-org run covers them. Random inputs only (no coverage
# phase of boundary values per parameter): what matters is who calls, and there are many operations.
cross_org_schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(max_body_bytes=1 << 20))
cross_org_schema.config.phases.coverage.enabled = False
cross_org_schema = cross_org_schema.exclude(
    operation_id=[cross_org_schema[path][method].definition.raw["operationId"] for method, path in PUBLIC]
)
# Path parameters that are names within an org (tags, custom fields), not ids: in the caller's own org
# they name the caller's own things.
NAMES = {"name"}
_calls = itertools.count()


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, org):
    if "org_id" in (case.path_parameters or {}):
        case.path_parameters["org_id"] = "c"
    case.call_and_validate(headers=org.headers, checks=[not_a_server_error])


def not_a_success_on_anothers_objects(ctx: Any, response: Any, case: Any) -> None:
    """Every path parameter names the victim's org or objects: the caller's key must not reach them."""
    if 200 <= response.status_code < 300:
        raise AssertionError(f"{response.status_code} on another org's {case.path_parameters}")


def not_anothers_data(ctx: Any, response: Any, case: Any) -> None:
    if MARKER in response.text or "victim@x.io" in response.text:
        raise AssertionError(f"another org's data in the answer: {response.text[:300]}")


@pytest.fixture
def untouched(victim: tuple[Any, dict[str, str]]):
    """What the victim read, before the operation's first example, on the GET paths its path names; after
    the last example, the victim reads the same there."""
    a, ids = victim
    before: dict[str, tuple[int, Any]] = {}
    yield before
    assert {url: read(a, url, ids) for url in before} == before


def _reads_above(path: str) -> list[str]:
    """The GET paths of the document that are `path` or a prefix of it (the objects it names)."""
    gets = {p for p, operations in schema.raw_schema["paths"].items() if "get" in operations}
    parts = path.split("/")
    return [p for p in ("/".join(parts[:n]) for n in range(3, len(parts) + 1)) if p in gets]


@cross_org_schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_another_orgs_key_on_the_victims_ids(case, victim, other_org, untouched):
    a, ids = victim
    for url in _reads_above(case.path):
        untouched.setdefault(url, read(a, url, ids))
    params = [name for name in path_params(case.path) if name != "org_id"]
    # A's org id, or the caller's own org (`c`) with A's object ids: both must be refused.
    own_org = bool(set(params) - NAMES) and next(_calls) % 2 == 1
    case.path_parameters = {
        **(case.path_parameters or {}),
        "org_id": "c" if own_org else a.org_id,
        **{name: ids[name] for name in params},
    }
    case.call_and_validate(
        headers=other_org.headers,
        checks=[not_a_server_error, not_a_success_on_anothers_objects, not_anothers_data],
    )
