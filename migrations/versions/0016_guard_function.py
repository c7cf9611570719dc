"""guard_function: a guard that refuses inside PostgreSQL

``fieldproof_guard(ok, what)`` returns true when ``ok`` is true and otherwise raises SQLSTATE FPG01 ("fieldproof
guard refused: <what>"). A guarded write that must change a row (a claim's state move) calls it, so a refusal fails
the statement itself: everything sent after it in the same pipeline, the COMMIT included, is skipped (core.flow).
VOLATILE on purpose (and tested): it keeps the guard's subquery from being merged into the join around it, where
a filter over an empty side would never run.

Revision ID: 0016_guard_function
Revises: 0015_fresh_angle
"""
from alembic import op

revision = '0016_guard_function'
down_revision = '0015_fresh_angle'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
CREATE OR REPLACE FUNCTION fieldproof_guard(ok boolean, what text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF ok IS NOT TRUE THEN
        RAISE EXCEPTION 'fieldproof guard refused: %', what USING ERRCODE = 'FPG01';
    END IF;
    RETURN true;
END
$$""")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS fieldproof_guard(boolean, text)")
