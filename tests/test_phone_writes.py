"""api.phone_writes: check-in and check-out past FastAPI's machinery answer exactly as the FastAPI routes do.

Two live servers on one database, one with the lean path (the default) and one without
(FIELDPROOF_PHONE_FAST_PATH=false), get the same sequence of requests, good and bad, each on a claim of its own:
every status, error code, error list, replay header and response shape must match. The dispatcher's own choices
(what it answers, what it hands to FastAPI with the body replayed) are checked in-process.
"""
from __future__ import annotations

import asyncio
import json

import pytest

from tests.fieldwork import fix
from tests.live import live_server
from tests.test_guards_parallel import LIMITS, _claimed

FAR = dict(lat=39.95, lon=116.30)  # ~10 km from the store: outside its (hard) fence


@pytest.fixture(scope="module")
def servers(test_database):
    with live_server("phone_writes", LIMITS) as fast:
        with live_server("phone_writes_plain", {**LIMITS, "FIELDPROOF_PHONE_FAST_PATH": "false"},
                         database=fast.env["FIELDPROOF_DATABASE_URL"]) as plain:
            yield fast, plain


def _shape(r) -> dict:
    """What must match: status, the replay header, the error's code (or FastAPI's error list), the body's keys."""
    body = r.json()
    out = {"status": r.status_code, "replayed": r.headers.get("Idempotent-Replayed"),
           "www_authenticate": r.headers.get("WWW-Authenticate")}
    if r.status_code >= 400:
        out["code"] = body.get("code")
        out["errors"] = [(e.get("loc"), e.get("type")) for e in body.get("errors", [])]
    else:
        out["keys"] = sorted(body)
        out["verdict"] = body.get("verdict")  # reasons differ: the second run repeats the first one's coordinates
    return out


def _scenario(server) -> list[dict]:
    """The same requests on a fresh claim of this server; each response's shape, in order."""
    claim_id, headers, _ = _claimed(server)
    base = f"/v1/claims/{claim_id}"
    keyed = {**headers, "Idempotency-Key": "k-1"}
    good = fix()
    out = []
    with server.http() as c:
        def post(path, **kw):
            out.append(_shape(c.post(path, **kw)))

        post(f"{base}/checkins", json=fix())  # no token
        post(f"{base}/checkins", json=fix(), headers={"Authorization": "Bearer not-a-token"})
        post("/v1/claims/0/checkins", json=fix(), headers=headers)
        post(f"/v1/claims/{2**63}/checkins", json=fix(), headers=headers)  # past bigint
        post(f"/v1/claims/{2**62}/checkins", json=fix(), headers=headers)  # no such claim
        post(f"{base}/checkins", content=b"{", headers={**headers, "Content-Type": "application/json"})
        post(f"{base}/checkins", content=b"[1, 2]", headers={**headers, "Content-Type": "application/json"})
        post(f"{base}/checkins", content=b"", headers={**headers, "Content-Type": "application/json"})
        post(f"{base}/checkins", json={k: v for k, v in fix().items() if k != "lat"}, headers=headers)
        post(f"{base}/checkins", json=fix(lat=95), headers=headers)
        post(f"{base}/checkins", json=fix(crs="mars"), headers=headers)
        post(f"{base}/checkins", content=json.dumps(fix()).encode(), headers={**headers, "Content-Type": "text/plain"})
        post(f"{base}/checkins", json=fix(), headers={**headers, "Idempotency-Key": "x" * 300})
        post(f"{base}/checkouts", json=fix(), headers=headers)  # not checked in
        post(f"{base}/checkins", json=good, headers=keyed)
        post(f"{base}/checkins", json=good, headers=keyed)  # replay
        post(f"{base}/checkins", json=fix(), headers=keyed)  # same key, other body
        post(f"{base}/checkins", json=fix(), headers=headers)  # already checked in
        post(f"{base}/checkouts", json=fix(**FAR), headers={**headers, "Idempotency-Key": "k-2"})  # hard fence
        post(f"{base}/checkouts", json=fix(), headers={**headers, "Idempotency-Key": "k-3"})
        post(f"{base}/checkouts", json=fix(), headers=headers)  # already checked out
        post(f"{base}/checkouts", content=b"[" * 100_000, headers={**headers, "Content-Type": "application/json",
                                                                  "Idempotency-Key": "k-4"})  # past recursion
    return out


def test_the_lean_path_answers_every_request_as_the_routes_do(servers):
    fast, plain = servers
    got, expected = _scenario(fast), _scenario(plain)
    for i, (a, b) in enumerate(zip(got, expected)):
        assert a == b, (i, a, b)
    assert len(got) == len(expected) == 22
    statuses = [s["status"] for s in got]
    assert statuses[14:16] == [201, 201] and got[15]["replayed"] == "true", got
    assert (statuses[18], got[18]["code"]) == (422, "outside_fence") and statuses[19] == 201, got
    assert "dwell_s" in got[19]["keys"] and (statuses[20], got[20]["code"]) == (409, "already_checked_out"), got
    assert [s["status"] for s in got[:4]] == [401, 401, 422, 422] and got[4]["code"] == "claim_not_found", got
    assert got[21]["status"] == 400, got[21]  # FastAPI's answer to a body it cannot parse, never a 500


def _call(app, scope_path: str, body: bytes, headers: list[tuple[bytes, bytes]], access,
          gone: bool = False) -> tuple[list, list]:
    """Run PhoneWrites once with a downstream app that records what reached it (and the body it could read);
    ``gone``: the client disconnects after the first chunk."""
    from api.phone_writes import PhoneWrites

    passed, sent = [], []

    async def downstream(scope, receive, send):
        parts = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                parts.append(b"<gone>")
                break
            parts.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        passed.append(b"".join(parts))

    class App:  # what PhoneWrites reads of the FastAPI app
        dependency_overrides: dict = {}

    scope = {"type": "http", "method": "POST", "path": scope_path, "headers": headers,
             "state": {} if access is None else {"access_claims": access}, "client": ("192.0.2.1", 1)}
    chunks = [body[:3]] if gone else [body[:3], body[3:]]

    async def receive():
        part = chunks.pop(0) if chunks else None
        if part is None:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": part, "more_body": gone or bool(chunks)}

    async def send(message):
        sent.append(message)

    asyncio.run(PhoneWrites(downstream, App())(scope, receive, send))
    return passed, sent


def test_the_dispatcher_hands_anything_unusual_to_fastapi_with_the_body_intact(monkeypatch):
    from fastapi.responses import JSONResponse

    import api.phone_writes as pw

    answered = []

    async def fake_fix_response(kind, claim_id, body, access, idem, run, request):
        answered.append((kind, claim_id, body.lat, access, idem.key, idem.digest != ""))
        return JSONResponse({"ok": True}, status_code=201)

    async def no_runner(request):
        return None

    monkeypatch.setattr(pw, "fix_response", fake_fix_response)
    monkeypatch.setattr(pw.deps, "get_flow_runner", no_runner)
    body = json.dumps(fix(lat=39.9)).encode()
    js = [(b"content-type", b"application/json; charset=utf-8"), (b"idempotency-key", b"abc-1")]

    passed, sent = _call(None, "/v1/claims/7/checkins", body, js, (5, "login"))
    assert not passed and answered == [("in", 7, 39.9, (5, "login"), "abc-1", True)] and sent[0]["status"] == 201
    passed, _ = _call(None, "/v1/claims/7/checkouts", body, js, (5, None))
    assert not passed and answered[-1][0] == "out"
    answered.clear()
    for path, raw, headers, access in (
            ("/v1/claims/7/checkins", body, js, None),                        # no verified token
            ("/v1/claims/7/checkins", body, [(b"content-type", b"text/plain")], (5, None)),
            ("/v1/claims/07/checkins", body, js, (5, None)),                  # not the canonical id
            (f"/v1/claims/{2**63}/checkins", body, js, (5, None)),            # past bigint
            ("/v1/claims/7/checkins/", body, js, (5, None)),
            ("/v1/claims/7/checkins", b"{not json", js, (5, None)),
            ("/v1/claims/7/checkins", json.dumps({"lat": 1}).encode(), js, (5, None))):
        passed, sent = _call(None, path, raw, headers, access)
        assert passed == [raw] and not sent, path  # FastAPI gets the whole body, once, as sent
    # A client gone half way: FastAPI hears the disconnect (its 400, its route in the metrics), nothing is run.
    passed, sent = _call(None, "/v1/claims/7/checkins", body, js, (5, None), gone=True)
    assert passed == [b"<gone>"] and not sent
    passed, sent = _call(None, "/v1/claims/7/checkins", b"[" * 100_000, js, (5, None))
    assert passed == [b"[" * 100_000] and not sent  # nested past the recursion limit: FastAPI's 400, not a 500
    assert not answered
