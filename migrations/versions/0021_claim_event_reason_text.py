"""claim_event_reason_text: an audit row's reason holds the whole text its transition was given

claim_event.reason was varchar(500), while an appeal's reason may be 1,000 characters and several transitions
prefix the 500 a person may write ("spot check failed: ", "appeal denied: ", a rejection's reason code): such a
transition failed with a generic 422 instead of being recorded. varchar(n) to text changes only the catalogue (no
table rewrite, no long lock); on the partitioned table it applies to every partition.

Revision ID: 0021_claim_event_reason_text
Revises: 0020_radio_counted
"""
import sqlalchemy as sa
from alembic import op

revision = '0021_claim_event_reason_text'
down_revision = '0020_radio_counted'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column('claim_event', 'reason', type_=sa.Text(), existing_type=sa.String(500), existing_nullable=True)


def downgrade() -> None:
    # Longer reasons recorded since are cut to fit (the audit copy; the appeal keeps its own text).
    op.execute("UPDATE claim_event SET reason = left(reason, 500) WHERE length(reason) > 500")
    op.alter_column('claim_event', 'reason', type_=sa.String(500), existing_type=sa.Text(), existing_nullable=True)
