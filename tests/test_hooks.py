"""tasks learns of checkin and evidence only through tasks.hooks; an empty slot fails loudly, never skips."""
import pytest

from tasks import hooks


@pytest.fixture
def empty_hooks(monkeypatch):
    """The hook slots as a process that never registered sees them."""
    for name in ("_submit_checks", "_review_details", "_claim_fix"):
        monkeypatch.setattr(hooks, name, {})


def test_registered_at_start_up():
    hooks.assert_complete()  # conftest registers as the app, the Celery app and the CLI do


def test_missing_registration_fails_loudly(empty_hooks):
    with pytest.raises(hooks.HookMissing, match="evidence_requirements"):
        hooks.run_submit_checks(None, None, None)
    with pytest.raises(hooks.HookMissing):
        hooks.review_details(None, [1])
    with pytest.raises(hooks.HookMissing):
        hooks.claim_fix(None, 1)
    with pytest.raises(hooks.HookMissing):
        hooks.assert_complete()


def test_unknown_slot_refused():
    with pytest.raises(ValueError):
        hooks.register_submit_check("not_a_slot", lambda *a: None)
