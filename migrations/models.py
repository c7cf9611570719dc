"""Every package's models, so one MetaData knows all tables (Alembic autogenerate, the migrations test).

It sits above every domain (top layer), so no lower package has to know the whole schema."""
from geoalchemy2 import alembic_helpers

import accounts.models  # noqa: F401
import checkin.models  # noqa: F401
import core.idempotency  # noqa: F401
import core.jobs  # noqa: F401
import evidence.models  # noqa: F401
import heatmap.models  # noqa: F401
import ledger.models  # noqa: F401
import tasks.models  # noqa: F401
from core.models import Base
from core.partitions import is_partition

metadata = Base.metadata


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Autogenerate's filter: GeoAlchemy2's, and monthly partitions are not tables of their own (core.partitions)."""
    if type_ == "table" and reflected and is_partition(name):
        return False
    return alembic_helpers.include_object(obj, name, type_, reflected, compare_to)
