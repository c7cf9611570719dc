"""capture receipts and radio fingerprints (issue 17)

Check-ins keep the keyed hashes of the Wi-Fi and cell ids a phone scanned (never the raw values) and whether
they are still to be learned; each task gets a learned fingerprint (radio_site: how many accepted check-ins and
distinct workers it was learned from; radio_fingerprint: one row per hash with its distinct workers). Tasks say
whether photos from the gallery are accepted and may pin Wi-Fi (as hashes). Evidence records its capture
receipt: whether it verified, when the phone says it was taken, and the nonce's SHA-256 (unique: used once).

Revision ID: 0012_capture_radio
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0012_capture_radio'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('checkin', sa.Column('radio', postgresql.ARRAY(sa.BigInteger())))
    op.add_column('checkin', sa.Column('radio_learned', sa.Boolean()))
    op.create_index('ix_checkin_radio_pending', 'checkin', ['id'], postgresql_where=sa.text('radio_learned = false'))
    op.create_index('ix_checkin_task_radio', 'checkin', ['task_id', 'id'],
                    postgresql_where=sa.text('radio_learned IS NOT NULL'))
    op.create_table(
        'radio_site',
        sa.Column('task_id', sa.BigInteger(), sa.ForeignKey('task.id'), primary_key=True),
        sa.Column('checkins', sa.Integer(), nullable=False),
        sa.Column('workers', sa.Integer(), nullable=False),
        sa.Column('hashes', sa.Integer(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False))
    op.create_table(
        'radio_fingerprint',
        sa.Column('task_id', sa.BigInteger(), sa.ForeignKey('task.id'), primary_key=True),
        sa.Column('hash', sa.BigInteger(), primary_key=True),
        sa.Column('workers', sa.Integer(), nullable=False),
        sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False))
    op.add_column('task', sa.Column('allow_gallery', sa.Boolean(), nullable=False, server_default='true'))
    op.add_column('task', sa.Column('radio_pins', postgresql.ARRAY(sa.BigInteger()), nullable=False,
                                    server_default='{}'))
    op.add_column('evidence', sa.Column('capture_verified', sa.Boolean(), nullable=False, server_default='false'))
    op.add_column('evidence', sa.Column('captured_at', sa.DateTime(timezone=True)))
    op.add_column('evidence', sa.Column('capture_nonce_sha256', sa.String(64)))
    op.create_index('uq_evidence_capture_nonce', 'evidence', ['capture_nonce_sha256'], unique=True,
                    postgresql_where=sa.text('capture_nonce_sha256 IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('uq_evidence_capture_nonce', 'evidence')
    for col in ('capture_nonce_sha256', 'captured_at', 'capture_verified'):
        op.drop_column('evidence', col)
    op.drop_column('task', 'radio_pins')
    op.drop_column('task', 'allow_gallery')
    op.drop_table('radio_fingerprint')
    op.drop_table('radio_site')
    op.drop_index('ix_checkin_task_radio', 'checkin')
    op.drop_index('ix_checkin_radio_pending', 'checkin')
    op.drop_column('checkin', 'radio_learned')
    op.drop_column('checkin', 'radio')
