"""The API fuzzed from its own OpenAPI document (schemathesis): every operation of
/api/v1/openapi.json, called with a Bearer token and generated inputs (valid ones, and ones the
schema forbids), answers without a server error, and its valid answers match the schema it
documents. On SQLite and PostgreSQL, over a store the real pipeline filled from the demo mails,
so the generated calls meet real mails, serials and review tasks.

The examples are bounded (EXAMPLES per operation and mode, no shrinking of a failure beyond
what Hypothesis does by default, no example database), so a run takes well under a minute.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from web_fixtures import desk_material, mail_desk

__all__ = ["desk_material", "mail_desk"]  # the fixtures

EXAMPLES = 12  # per operation and generation mode

FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                         suppress_health_check=list(HealthCheck))


def test_every_api_operation_survives_generated_input_without_a_server_error(mail_desk):
    console = mail_desk.console
    console.add_user("fuzz", "admin")  # an admin: no operation is refused for the role
    auth = {"authorization": f"Bearer {console.token('fuzz')}"}
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", console.app, headers=auth)
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {(op.method.upper(), op.path) for op in operations}
    assert ("POST", "/api/v1/reviews/{task_id}/approve") in paths
    assert ("GET", "/api/v1/reviews") in paths and ("GET", "/api/v1/summary") in paths
    seen: list[tuple[str, str, int]] = []

    def check(case) -> None:
        response = case.call(headers=auth)
        seen.append((case.operation.method.upper(), case.operation.path, response.status_code))
        checks = [not_a_server_error]
        if response.status_code < 400:  # what the operation promises, when it answered
            checks.append(response_schema_conformance)
        case.validate_response(response, checks=checks)

    for op in operations:  # one bounded Hypothesis run per operation and mode
        FUZZ_SETTINGS(given(case=op.as_strategy(generation_mode=GenerationMode.POSITIVE))(
            check))()
        try:
            FUZZ_SETTINGS(given(case=op.as_strategy(generation_mode=GenerationMode.NEGATIVE))(
                check))()
        except Unsatisfiable:  # an operation that takes no input has none to get wrong
            assert not op.path_parameters and not op.query and not list(op.body), op.path
    assert {(method, path) for method, path, _ in seen} == paths  # each one was called
    assert all(status < 500 for _, _, status in seen)
    print(f"fuzzed {len(paths)} operations with {len(seen)} calls: "
          f"{sorted({status for _, _, status in seen})}")
