"""Start-up registration of the domains' hooks into lower layers (``tasks.hooks``), for every entry point in api."""
from __future__ import annotations

from checkin import hooks as checkin_hooks
from evidence import hooks as evidence_hooks
from tasks import hooks as task_hooks


def register_domain_hooks() -> None:
    """Fill every slot ``tasks`` declares; raises ``HookMissing`` if one stays empty."""
    checkin_hooks.register()
    evidence_hooks.register()
    task_hooks.assert_complete()
