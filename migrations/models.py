"""Every package's models, so one MetaData knows all tables (Alembic autogenerate, the migrations test).

It sits above every domain (top layer), so no lower package has to know the whole schema."""
import accounts.models  # noqa: F401
import checkin.models  # noqa: F401
import core.idempotency  # noqa: F401
import core.jobs  # noqa: F401
import evidence.models  # noqa: F401
import heatmap.models  # noqa: F401
import ledger.models  # noqa: F401
import tasks.models  # noqa: F401
from core.models import Base

metadata = Base.metadata
