"""Property-based calls to every operation of the OpenAPI document, with a valid key: never a 5xx."""

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from audience.api.app import create_app

# The application is stateless; each test's `org` fixture provides the stack and the key.
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(max_body_bytes=1 << 20))


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, org):
    if "org_id" in (case.path_parameters or {}):
        case.path_parameters["org_id"] = "c"
    case.call_and_validate(headers=org.headers, checks=[not_a_server_error])
