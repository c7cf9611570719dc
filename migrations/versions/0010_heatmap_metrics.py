"""heatmap: outcome and dwell measures, per-day roll-ups, exact distinct workers per hour and day

The roll-ups are derived data: they are emptied and the watermarks reset, so the beat job (or
`fieldproof heatmap backfill`) rebuilds them with the new measures from the check-ins and claim events.

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

NEW_COUNTS = ("completions", "rejections", "spot_check_failures", "workers")
ALL_COUNTS = ("checkins", "spoof_flags", "duplicate_flags") + NEW_COUNTS


def _counts(names):
    return [sa.Column(n, sa.Integer(), server_default="0", nullable=False) for n in names]


def _hist():
    return sa.Column("dwell_hist", postgresql.ARRAY(sa.Integer()), server_default=sa.text("'{}'"), nullable=False)


# Histograms add bucket by bucket; an empty array is the zero histogram.
HIST_ADD = """
CREATE FUNCTION hist_add(a integer[], b integer[]) RETURNS integer[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN cardinality(a) = 0 THEN b WHEN cardinality(b) = 0 THEN a
                ELSE ARRAY(SELECT x + y FROM unnest(a, b) WITH ORDINALITY AS t(x, y, i) ORDER BY i) END
$$"""
HIST_SUM = "CREATE AGGREGATE hist_sum(integer[]) (SFUNC = hist_add, STYPE = integer[], INITCOND = '{}')"


def upgrade() -> None:
    op.execute(HIST_ADD)
    op.execute(HIST_SUM)
    op.execute("TRUNCATE heat_cell_hour, heat_cell_worker_day")
    op.execute("DELETE FROM rollup_state")
    for name in ("checkins", "spoof_flags", "duplicate_flags"):
        op.alter_column("heat_cell_hour", name, server_default="0")
    for col in _counts(NEW_COUNTS) + [_hist()]:
        op.add_column("heat_cell_hour", col)
    op.create_table(
        "heat_cell_day",
        sa.Column("res", sa.SmallInteger(), nullable=False),
        sa.Column("cell", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        *_counts(ALL_COUNTS), _hist(),
        sa.PrimaryKeyConstraint("res", "cell", "day", name=op.f("pk_heat_cell_day")),
    )
    op.create_index("ix_heat_cell_day_res_day", "heat_cell_day", ["res", "day"])
    op.create_table(
        "heat_cell_worker_hour",
        sa.Column("res", sa.SmallInteger(), nullable=False),
        sa.Column("cell", sa.BigInteger(), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("worker_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("res", "cell", "hour", "worker_id", name=op.f("pk_heat_cell_worker_hour")),
    )
    op.create_index("ix_heat_cell_worker_hour_hour", "heat_cell_worker_hour", ["hour"])
    op.create_index("ix_heat_cell_worker_day_day", "heat_cell_worker_day", ["day"])


def downgrade() -> None:
    op.drop_index("ix_heat_cell_worker_day_day", table_name="heat_cell_worker_day")
    op.drop_table("heat_cell_worker_hour")
    op.drop_table("heat_cell_day")
    for name in NEW_COUNTS + ("dwell_hist",):
        op.drop_column("heat_cell_hour", name)
    for name in ("checkins", "spoof_flags", "duplicate_flags"):
        op.alter_column("heat_cell_hour", name, server_default=None)
    op.execute("DELETE FROM rollup_state")
    op.execute("DROP AGGREGATE hist_sum(integer[])")
    op.execute("DROP FUNCTION hist_add(integer[], integer[])")
