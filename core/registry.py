"""Imports every package's models so one MetaData knows all tables (Alembic, tests)."""
from core.models import Base
import core.idempotency  # noqa: F401
import accounts.models  # noqa: F401
import core.jobs  # noqa: F401
import tasks.models  # noqa: F401
import checkin.models  # noqa: F401
import evidence.models  # noqa: F401
import ledger.models  # noqa: F401
import geo.models  # noqa: F401

metadata = Base.metadata
