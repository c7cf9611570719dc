"""ip_accounts_ordered: the shared-IP count always reads the (ip, server_time) index newest first

``fieldproof_ip_accounts`` (migration 0017) stops reading at its answer only if its query's plan walks the
(ip, server_time) index backwards (a Merge Append over the partitions). The write path's connections plan
generically (``plan_cache_mode=force_generic_plan``), and a generic plan estimates ``ip = $1`` from the column's
statistics alone: where they promise few rows per address (a fresh database, or many distinct addresses) the
planner took Append + Sort instead, which reads every fix of the address in the hour before the first row comes
out, behind a carrier NAT thousands (11.4 ms a call against 16 µs for 24,218 fixes on one address). ``enable_sort
= off`` for the function's own statements makes the ordered index scan the only cheap plan whatever the statistics
say; nothing else in the session is affected (a function's SET clause is undone when it returns). A later CREATE
OR REPLACE of the function must repeat the setting (``tests/test_partitions.py`` fails without it).

Revision ID: 0018_ip_accounts_ordered
Revises: 0017_ip_accounts
"""
from alembic import op

revision = '0018_ip_accounts_ordered'
down_revision = '0017_ip_accounts'
branch_labels = None
depends_on = None

_SIGNATURE = "fieldproof_ip_accounts(inet, timestamptz, timestamptz, bigint, integer, integer)"


def upgrade() -> None:
    op.execute(f"ALTER FUNCTION {_SIGNATURE} SET enable_sort = off")


def downgrade() -> None:
    op.execute(f"ALTER FUNCTION {_SIGNATURE} RESET enable_sort")
