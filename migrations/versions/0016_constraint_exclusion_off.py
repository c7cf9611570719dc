"""constraint_exclusion off for this database: partitions are pruned by their bounds, not by proofs

With the default ``constraint_exclusion = partition`` the planner, for every partition left after pruning, reads
the partition's CHECK and NOT NULL constraints (deparsed from text each time) and tries to refute the query's
WHERE terms with them: 31 constraints on ``checkin`` against each of the 13 partition scans of the check-in's
measure statement, about a third of what planning it costs beyond the plain table (EXPLAIN (SUMMARY) on the bench
data, 1 M check-ins: 1.02 ms -> 0.68 ms, plain table 0.41 ms). Declarative partitions never need it: the pruning
that leaves months out works on the partition bounds and is not affected by this setting. What it still did here
(skip a UNION ALL branch or an inheritance child whose CHECKs contradict the query) nothing in this schema relies on:
no table inherits, and results never change, only the plan's size. Set per database so every client gets it,
PgBouncer's server connections included (they do not pass the ``options`` startup parameter on); a role that does
not own the database cannot set it, which leaves the default (a warning, not a failure: it is a planning cost only).

Revision ID: 0016_constraint_exclusion_off
Revises: 0015_fresh_angle
"""
from alembic import op

revision = '0016_constraint_exclusion_off'
down_revision = '0015_fresh_angle'
branch_labels = None
depends_on = None

_SET = """
DO $$
BEGIN
    IF pg_has_role((SELECT datdba FROM pg_database WHERE datname = current_database()), 'MEMBER') THEN
        EXECUTE format('ALTER DATABASE %%I %s', current_database());
    ELSE
        RAISE WARNING 'not the owner of database %%: constraint_exclusion left as it is', current_database();
    END IF;
END $$
"""


def upgrade() -> None:
    op.execute(_SET % "SET constraint_exclusion = off")


def downgrade() -> None:
    op.execute(_SET % "RESET constraint_exclusion")
