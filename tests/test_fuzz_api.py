"""Schema fuzzing (schemathesis) against the real app: no 5xx, and every response matches the document.

Every operation in /openapi.json gets valid (positive) and invalid (negative) generated requests, each sent
as each of four callers (anonymous, worker, merchant, ops) so the routes behind each role are reached.
Bounded for `make test` (FIELDPROOF_FUZZ_EXAMPLES per operation and mode, derandomised so a failure
reproduces); `make fuzz` runs a larger random search. All failures are collected and reported together.
"""
from __future__ import annotations

import os

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from tests.helpers import auth_for

EXAMPLES = int(os.environ.get("FIELDPROOF_FUZZ_EXAMPLES", "3"))
RANDOM = os.environ.get("FIELDPROOF_FUZZ_RANDOM") == "1"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Plain-text operational endpoints outside the JSON API (covered by test_edge).
EXCLUDED_PATHS = ("/metrics", "/healthz")


def _fuzz_operation(operation, mode, callers, failures: dict[str, str]) -> int:
    sent = 0

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
    def run(case):
        nonlocal sent
        for role, headers in callers.items():
            sent += 1
            try:
                # An unhandled exception in the app is re-raised by the in-process client: a server error too.
                response = case.call(headers=headers)
                case.validate_response(response, checks=CHECKS)
            except BaseException as exc:  # noqa: BLE001 - collected, reported below
                failures.setdefault(f"{operation.label} [{mode.value}, {role}]",
                                    f"{type(exc).__name__}: {str(exc)[:400]}\n  {case.as_curl_command()}")
                raise

    try:
        run()
    except Unsatisfiable:
        pass  # an operation without inputs has no invalid ("negative") form
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001 - schemathesis raises exception groups; the failure is recorded
        pass
    return sent


def test_no_server_errors_and_responses_match_the_document(app, client, db):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    callers = {"anonymous": {}} | {role: auth_for(client, db, role)[1] for role in ("worker", "merchant", "ops")}
    failures: dict[str, str] = {}  # first failure per operation, mode and caller (shrinking repeats it)
    total = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in EXCLUDED_PATHS:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            total += _fuzz_operation(operation, mode, callers, failures)
    print(f"fuzz: {total} requests")
    assert total > 100
    assert not failures, f"{len(failures)} failed:\n" + "\n".join(f"{k}: {v}" for k, v in failures.items())
