"""Capture nonces: a short-lived token bound to one claim that the in-app camera stamps on a photo.

Stateless and unguessable: ``base64url(claim_id, issued, expires, 8 random bytes, HMAC-SHA256 tag[:16])`` with a
key derived from the deployment secret. Verifying needs no database; single use is the evidence table's unique
index on the nonce's SHA-256 (evidence.service), decided under the claim's row lock.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from sqlalchemy.orm import Session

from accounts.models import User
from accounts.security import derived_key
from core.errors import Conflict, InvalidInput
from tasks import claims

_BODY = struct.Struct(">QII8s")  # claim id, issued and expiry (epoch seconds), random
_TAG = 16
# A nonce lives 20 minutes: long enough to frame a shelf and take a few photos, short enough that one cannot be
# carried to another day; the camera asks for a fresh one (POST /v1/claims/{id}/capture-nonces) when it lapses.
TTL_S = 20 * 60
# An upload may arrive this long after the nonce expired (a photo taken in time on a slow or dropped network).
UPLOAD_GRACE_S = 30 * 60
# The phone's clock may be this far from the server's when it stamps captured_at.
CLOCK_SLACK_S = 120


class CaptureReceiptInvalid(InvalidInput):
    code = "capture_receipt_invalid"
    detail = "The photo's capture receipt does not verify."


@dataclass(frozen=True)
class Nonce:
    """A verified nonce's contents."""

    claim_id: int
    issued_at: datetime
    expires_at: datetime


@lru_cache
def _key() -> bytes:
    return derived_key("capture-nonce")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def issue(claim_id: int, now: datetime, ttl_s: int = TTL_S) -> tuple[str, datetime]:
    """A new nonce for ``claim_id`` and when it expires."""
    issued = int(now.timestamp())
    body = _BODY.pack(claim_id, issued, issued + ttl_s, secrets.token_bytes(8))
    tag = hmac.new(_key(), body, hashlib.sha256).digest()[:_TAG]
    return _b64(body + tag), datetime.fromtimestamp(issued + ttl_s, timezone.utc)


def digest(nonce: str) -> str:
    """SHA-256 of a nonce: what is stored to make it single-use (the nonce itself is never stored)."""
    return hashlib.sha256(nonce.encode()).hexdigest()


def verify(nonce: str, claim_id: int, now: datetime) -> Nonce:
    """The nonce's contents if it was issued by this server for ``claim_id`` and may still be used at ``now``."""
    try:
        raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
    except (binascii.Error, ValueError):
        raise CaptureReceiptInvalid("The capture nonce is not one this server issued.", why="forged")
    # Only the spelling we issued: base64 has others for the same bytes (padding, the last character's unused
    # bits), and single use is keyed on the text's digest, so another spelling would pass as a fresh nonce.
    if len(raw) != _BODY.size + _TAG or _b64(raw) != nonce or not hmac.compare_digest(
            raw[_BODY.size:], hmac.new(_key(), raw[:_BODY.size], hashlib.sha256).digest()[:_TAG]):
        raise CaptureReceiptInvalid("The capture nonce is not one this server issued.", why="forged")
    owner, issued, expires, _ = _BODY.unpack(raw[:_BODY.size])
    if owner != claim_id:
        raise CaptureReceiptInvalid("The capture nonce was issued for another claim.", why="other_claim")
    out = Nonce(owner, datetime.fromtimestamp(issued, timezone.utc), datetime.fromtimestamp(expires, timezone.utc))
    if now > out.expires_at + timedelta(seconds=UPLOAD_GRACE_S):
        raise CaptureReceiptInvalid("The capture nonce expired; take the photo again.", why="expired")
    return out


def check_capture_time(n: Nonce, captured_at: datetime, now: datetime) -> None:
    """The phone's capture time must fall inside the nonce's life (and not after the upload arrived)."""
    slack = timedelta(seconds=CLOCK_SLACK_S)
    if captured_at.tzinfo is None:
        raise CaptureReceiptInvalid("captured_at needs a time zone offset.", why="captured_at")
    if not (n.issued_at - slack <= captured_at <= min(n.expires_at, now) + slack):
        raise CaptureReceiptInvalid("The photo's capture time is outside the nonce's life.", why="captured_at")


def for_claim(*, db_session: Session, worker: User, claim_id: int, now: datetime) -> tuple[str, datetime]:
    """A fresh nonce for the worker's own claim while photos may be added to it (checked in, or sent back)."""
    found = claims.get_own(db_session=db_session, worker=worker, claim_id=claim_id)
    if found.state not in ("checked_in", "changes_requested"):
        raise Conflict(f"Photos are taken after check-in and before submission; the claim is {found.state}.",
                       code="evidence_not_accepted")
    return issue(claim_id, now)
