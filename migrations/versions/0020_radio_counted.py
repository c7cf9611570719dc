"""radio_counted: a site's counted radio hashes kept on its radio_site row, read with it by one key lookup

The check-in's measure found whether a scan shares a counted hash with the site's fingerprint by a subquery on
radio_fingerprint (``hash = ANY(scan)``, one index probe per scanned hash) joined to radio_site. Planned per call
(custom plans), the join and the subquery cost ~0.14 ms of PostgreSQL time per check-in with a scan
(bench_presence). The sweep that rebuilds a site (checkin.learning) now also stores the counted hashes (seen by
``radio_hash_min_workers`` distinct workers or more, the ones ``hashes`` counts) sorted in ``counted``; the measure
reads the row by its key in one scalar subquery and answers with ``counted && scan``. radio_fingerprint stays the
full record (every hash seen, by how many workers, when last); the sweep's re-judge reads ``counted`` too.

Existing sites are filled from radio_fingerprint with the deployment's ``radio_hash_min_workers``
(FIELDPROOF_CHECKIN_RADIO_HASH_MIN_WORKERS, 2 unless set: read here from the environment, not from checkin.settings,
so this revision replays whatever later becomes of that module), as their next rebuild would. The measure takes how
established a site is from the same array (its cardinality), so a row a sweep older than this revision writes while
a deployment rolls (``counted`` left empty) is not established rather than a mismatch for every scan.

Revision ID: 0020_radio_counted
Revises: 0019_history_reads
"""
import os

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0020_radio_counted'
down_revision = '0019_history_reads'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('radio_site', sa.Column('counted', postgresql.ARRAY(sa.BigInteger()), nullable=False,
                                          server_default='{}'))
    op.execute(sa.text("""
UPDATE radio_site rs SET counted = ARRAY(SELECT f.hash FROM radio_fingerprint f
                                          WHERE f.task_id = rs.task_id AND f.workers >= :hash_min ORDER BY f.hash)
""").bindparams(hash_min=int(os.environ.get("FIELDPROOF_CHECKIN_RADIO_HASH_MIN_WORKERS", "2"))))


def downgrade() -> None:
    op.drop_column('radio_site', 'counted')
