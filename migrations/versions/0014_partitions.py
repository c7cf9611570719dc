"""partitions: check-ins, claim audit rows and heatmap hour roll-ups partitioned by month, converted online

Each table is converted without rewriting or scanning it under a heavy lock (README, Scale-out):

1. outside any transaction: a CHECK (key < T) added NOT VALID, then VALIDATEd (a scan under SHARE UPDATE
   EXCLUSIVE: reads and writes go on), and for tables keyed by id a unique index (id, key) built CONCURRENTLY,
   because a partitioned table's primary key must contain its partition key. T is the first month boundary at
   least a day away (and after the latest row), so rows written between the validation and the swap still
   satisfy the CHECK;
2. one short transaction: the table is renamed <table>_legacy (its primary key and indexes renamed with it), an
   empty partitioned parent takes the old name with the same columns, defaults, CHECKs, foreign keys and indexes,
   and the old table is ATTACHed as the partition [MINVALUE, T): its validated CHECK proves the range, so ATTACH
   does not scan, and its existing indexes and foreign keys are adopted rather than rebuilt. Then a DEFAULT
   partition and the months from T on are created (core.partitions keeps creating them ahead).

Ids keep coming from the same sequence (now owned by the parent), so heatmap watermarks and the check-in ids
in claim audit data stay valid. No foreign key references these tables (checked: evidence and claims point at
claim, never at checkin or claim_event), so no referencing key has to learn the partition key.

The downgrade is not online: it copies the rows written since into the old table and rebuilds its primary key.

Revision ID: 0014_partitions
Revises: 0013_evidence_withdrawn
"""
from datetime import datetime, timedelta, timezone

from alembic import op
from sqlalchemy import text

revision = '0014_partitions'
down_revision = '0013_evidence_withdrawn'
branch_labels = None
depends_on = None

# table -> (partition key, primary key columns of the partitioned table, old primary key columns)
TABLES = {
    "checkin": ("server_time", "id, server_time", "id"),
    "claim_event": ("at", "id, at", "id"),
    "heat_cell_hour": ("hour", "res, cell, hour", "res, cell, hour"),
}
PREMAKE_MONTHS = 3


def _month(at: datetime, plus: int) -> datetime:
    index = at.year * 12 + at.month - 1 + plus
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=timezone.utc)


def _legacy_upper() -> datetime:
    """T: the first month boundary at least a day ahead (see step 1) and after every row already stored (a
    simulated clock or a downgrade may have left later ones). The max is a plain read: no lock held."""
    latest = [op.get_bind().execute(text(f"SELECT max({key}) FROM {table}")).scalar()
              for table, (key, _, _) in TABLES.items()]
    return max(_month(at + timedelta(days=1), 1) for at in [datetime.now(timezone.utc), *filter(None, latest)])


def _indexes(table: str) -> list[tuple[str, str]]:
    """(name, definition) of the table's indexes other than its primary key."""
    return [tuple(r) for r in op.get_bind().execute(text(
        "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
        " WHERE x.indrelid = CAST(:t AS regclass) AND NOT x.indisprimary ORDER BY 1"), {"t": table})]


def _foreign_keys(table: str) -> list[tuple[str, str]]:
    return [tuple(r) for r in op.get_bind().execute(text(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = CAST(:t AS regclass)"
        " AND contype = 'f' ORDER BY 1"), {"t": table})]


def _sequence(table: str) -> str | None:
    return op.get_bind().execute(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table}).scalar() \
        if table != "heat_cell_hour" else None


def _prepare(table: str, key: str, pk: str, old_pk: str, upper: datetime) -> None:
    """Step 1, outside a transaction: the validated range CHECK and the new key's unique index."""
    op.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {table}_legacy_range")  # a failed earlier attempt
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_legacy_range CHECK ({key} < '{upper.isoformat()}') "
               "NOT VALID")
    op.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {table}_legacy_range")
    if pk != old_pk:
        op.execute(f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {table}_legacy_pk ON {table} ({pk})")


def _swap(table: str, key: str, pk: str, old_pk: str, upper: datetime) -> None:
    """Step 2: rename the old table away, create the partitioned parent, attach the old table as its past."""
    legacy = f"{table}_legacy"
    if pk != old_pk:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT pk_{table}, "
                   f"ADD CONSTRAINT pk_{legacy} PRIMARY KEY USING INDEX {table}_legacy_pk")
    else:
        op.execute(f"ALTER TABLE {table} RENAME CONSTRAINT pk_{table} TO pk_{legacy}")
    # Read before the rename: the definitions name the table, which is then the partitioned parent's name.
    indexes, fks, seq = _indexes(table), _foreign_keys(table), _sequence(table)
    op.execute(f"ALTER TABLE {table} RENAME TO {legacy}")
    for name, _ in indexes:
        op.execute(f"ALTER INDEX {name} RENAME TO {_legacy_name(name, table)}")
    op.execute(f"CREATE TABLE {table} (LIKE {legacy} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE) "
               f"PARTITION BY RANGE ({key})")
    op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_legacy_range")
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY ({pk})")
    for name, definition in fks:
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
    for _, definition in indexes:
        op.execute(definition)
    if seq:
        op.execute(f"ALTER SEQUENCE {seq} OWNED BY {table}.id")
    # The validated CHECK implies the range, so this neither scans nor rebuilds (indexes and keys are adopted).
    op.execute(f"ALTER TABLE {table} ATTACH PARTITION {legacy} FOR VALUES FROM (MINVALUE) TO ('{upper.isoformat()}')")
    op.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
    for i in range(PREMAKE_MONTHS + 1):
        lo, hi = _month(upper, i), _month(upper, i + 1)
        op.execute(f"CREATE TABLE {table}_p{lo:%Y%m} PARTITION OF {table} "
                   f"FOR VALUES FROM ('{lo.isoformat()}') TO ('{hi.isoformat()}')")


def _legacy_name(index: str, table: str) -> str:
    return index.replace(table, f"{table}_legacy", 1)[:63]


def upgrade() -> None:
    upper = _legacy_upper()
    with op.get_context().autocommit_block():
        for table, spec in TABLES.items():
            _prepare(table, *spec, upper)
    # Writers insert a check-in, then its claim audit row: take the tables in that order. A lock that cannot be
    # had in 10 s fails the migration (run it again) rather than queueing every writer behind it.
    op.execute("SET LOCAL lock_timeout = '10s'")
    for table, spec in TABLES.items():
        op.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    for table, spec in TABLES.items():
        _swap(table, *spec, upper)


def _unswap(table: str, key: str, pk: str, old_pk: str) -> None:
    """Back to one plain table: detach the old one, copy the rows written since into it, restore its key."""
    legacy, seq = f"{table}_legacy", _sequence(table)
    op.execute(f"ALTER TABLE {table} DETACH PARTITION {legacy}")
    op.execute(f"ALTER TABLE {legacy} DROP CONSTRAINT {table}_legacy_range")
    columns = ", ".join(r[0] for r in op.get_bind().execute(text(
        "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) AND attnum > 0 AND NOT attisdropped"
        " ORDER BY attnum"), {"t": table}))
    op.execute(f"INSERT INTO {legacy} ({columns}) SELECT {columns} FROM {table}")
    if seq:
        op.execute(f"ALTER SEQUENCE {seq} OWNED BY {legacy}.id")
    op.execute(f"DROP TABLE {table}")  # the parent and its remaining partitions
    op.execute(f"ALTER TABLE {legacy} RENAME TO {table}")
    for name, _ in _indexes(table):
        op.execute(f"ALTER INDEX {name} RENAME TO {name.replace(f'{table}_legacy', table, 1)}")
    if pk != old_pk:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT pk_{legacy}, ADD CONSTRAINT pk_{table} PRIMARY KEY ({old_pk})")
    else:
        op.execute(f"ALTER TABLE {table} RENAME CONSTRAINT pk_{legacy} TO pk_{table}")


def downgrade() -> None:
    for table, spec in TABLES.items():
        _unswap(table, *spec)
