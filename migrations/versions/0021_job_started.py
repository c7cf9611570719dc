"""job_started: when a job was taken by a worker, so the sweeper re-sends only what the queue has passed by

``core.jobs.due_for_retry`` re-sent every pending job whose lease had run out. Under a backlog (a simulated day's
evidence queue waited ~46 s against a 30 s lease) that was most of the queue, once or twice per job: 6,720
redundant deliveries in a day of 3,380 uploads, each a Celery delivery and two statements in a worker that was the
bottleneck. The queue is FIFO per kind, so a pending job is lost only if a later job of its kind has been taken,
or if nothing of its kind has been taken for a lease (workers down, Redis flushed). ``started_at`` (set when a
worker counts its attempt) says both; the partial index finds the newest taken job of a kind in one probe.

Revision ID: 0021_job_started
Revises: 0020_radio_counted
"""
import sqlalchemy as sa
from alembic import op

revision = '0021_job_started'
down_revision = '0020_radio_counted'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('job', sa.Column('started_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_job_kind_started', 'job', ['kind', 'id'], postgresql_where=sa.text('started_at IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_job_kind_started', table_name='job')
    op.drop_column('job', 'started_at')
