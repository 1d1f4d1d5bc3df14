"""Schemathesis against the server's own OpenAPI schema: no request the schema allows gets a server error."""

import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed")
schemathesis = pytest.importorskip("schemathesis", reason="the dev extra (schemathesis) is not installed")
from hypothesis import HealthCheck, settings  # noqa: E402
from test_serve import StandIn  # noqa: E402

from whisper_lora.serve.app import ServeSettings, create_app  # noqa: E402

schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(ServeSettings(max_audio_s=60), StandIn()))


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_the_schema_allows_gets_a_server_error(case):
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:500])
    if response.status_code >= 400:
        assert set(response.json()["error"]) >= {"message", "type"}  # OpenAI's error shape, whatever went wrong
