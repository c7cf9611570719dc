"""evidence: a worker may withdraw a photo before submitting (kept for duplicate checks and ops, hidden elsewhere)

Revision ID: 0013_evidence_withdrawn
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = '0013_evidence_withdrawn'
down_revision = '0012_capture_radio'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable with no default: a catalogue-only change, no table rewrite.
    op.add_column('evidence', sa.Column('withdrawn_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('evidence', 'withdrawn_at')
