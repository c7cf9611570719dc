"""fresh_angle: a task may ask for a photo from a fresh angle

With ``task.fresh_angle`` set, a photo that is another exposure of a place already photographed for some claim
(``same_scene``) counts against the claim; without it (the default) it is a note only. Existing tasks keep the
default (false).

Revision ID: 0015_fresh_angle
Revises: 0014_partitions
"""
import sqlalchemy as sa
from alembic import op

revision = '0015_fresh_angle'
down_revision = '0014_partitions'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('task', sa.Column('fresh_angle', sa.Boolean(), nullable=False, server_default='false'))


def downgrade() -> None:
    op.drop_column('task', 'fresh_angle')
