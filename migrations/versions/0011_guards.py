"""guards: a task's escrow figure never goes below zero

Confirmations now move the figure with one atomic UPDATE (``escrow_fen = escrow_fen - x``); this constraint
is the backstop, so a future read-modify-write bug fails loudly instead of releasing other tasks' money.
Rows damaged by the old lost updates are reported by `fieldproof ledger check`, which reconciles every
task's figure with its postings; the migration leaves them as they are (money is never moved by a migration).

Revision ID: 0011
Revises: 0010
"""
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One scan of task under its lock, inside the migration's transaction (the table is small: one row a task).
    op.execute("ALTER TABLE task ADD CONSTRAINT ck_task_escrow_not_negative CHECK (escrow_fen >= 0)")


def downgrade() -> None:
    op.drop_constraint('ck_task_escrow_not_negative', 'task', type_='check')
