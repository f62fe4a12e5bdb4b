"""Property-based run over /openapi.json: no 5xx, every response matches the schema."""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from serving.api.app import create_app
from tests.serving.conftest import Workspace, make_app_settings


@pytest.mark.slow
def test_api_conforms_to_its_schema(workspace: Workspace) -> None:
    app = create_app(make_app_settings(workspace.home))
    auth = {"X-API-Key": workspace.keys["admin"]}
    with TestClient(app):  # the lifespan loads models and data
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == 11
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=8,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: schemathesis.Case) -> None:
                # Business rules the schema cannot state (a closed deal, a creation date after
                # the data) answer 422 to schema-valid input; every other check applies.
                excluded = [positive_data_acceptance]
                response = case.call(headers=auth)
                if (
                    case.operation.path == "/v1/forecast"
                    and response.status_code == 503
                    and "no salesml-forecast@champion" in str(response.json().get("detail", ""))
                ):
                    # This workspace trains no forecast model (tests/test_forecast_cli.py
                    # serves a real one): the documented 503 (see docs/api.md).
                    excluded.append(not_a_server_error)
                case.validate_response(response, headers=auth, excluded_checks=excluded)

            check()
