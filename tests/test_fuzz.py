"""Fuzz every API operation from its own OpenAPI document: no input may cause a 5xx, and
every answer (success or error) matches the schema the document gives for it."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from apphelpers import ADMIN, NODE, InProcessFarm

_root = Path(tempfile.mkdtemp(prefix="blendfarm-fuzz-"))
_farm = InProcessFarm(_root, allowed_hosts="testserver")  # the host schemathesis sends
atexit.register(shutil.rmtree, _root, ignore_errors=True)
_farm.submit({"frame": "1"})  # something to find, lease and fail
schema = schemathesis.openapi.from_asgi("/api/openapi.json", _farm.app)
# The event stream never ends by design; it is exercised by the browser and CLI tests.
schema = schema.exclude(path="/api/events")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_every_answer_matches_its_schema_and_none_is_a_server_error(
    case: schemathesis.Case,
) -> None:
    response = case.call(headers={**NODE, **ADMIN} if "purge" not in case.path else NODE)
    assert response.status_code < 500, (case.method, case.path, response.text[:500])
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
    if response.status_code >= 400:
        body = response.json()
        assert set(body["error"]) == {"code", "message", "status"}
