"""ip_accounts: the shared-IP count stops once it has its answer

``fieldproof_ip_accounts(ip, since, until, worker, scan_rows, enough)`` counts the other accounts among an IP's
latest ``scan_rows`` fixes in (since, until], newest first from the (ip, server_time) index, exactly as the
check-in's measure did in SQL, but it stops reading as soon as ``enough`` distinct accounts are seen. The shared-IP
signal only asks "at least shared_ip_min_accounts?", so the verdict is the same; behind a carrier NAT (many phones,
one address: the signal's common case) the count reads ~``enough`` rows instead of ``scan_rows`` heap rows, about
0.5 ms of PostgreSQL CPU per check-in here. A PL/pgSQL FOR loop reads its query through a cursor (10 rows per
fetch), so the rows after the stop are never read. NULL ip: 0.

Revision ID: 0017_ip_accounts
Revises: 0016_guard_function
"""
from alembic import op

revision = '0017_ip_accounts'
down_revision = '0016_guard_function'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
CREATE OR REPLACE FUNCTION fieldproof_ip_accounts(p_ip inet, p_since timestamptz, p_until timestamptz,
                                                  p_worker bigint, p_scan_rows integer, p_enough integer)
RETURNS integer LANGUAGE plpgsql STABLE AS $$
DECLARE
    seen bigint[] := '{}';
    w bigint;
BEGIN
    IF p_ip IS NULL OR p_enough <= 0 THEN
        RETURN 0;
    END IF;
    FOR w IN SELECT worker_id FROM checkin
              WHERE ip = p_ip AND server_time > p_since AND server_time <= p_until AND worker_id <> p_worker
              ORDER BY server_time DESC LIMIT p_scan_rows LOOP
        IF w <> ALL (seen) THEN
            seen := seen || w;
            EXIT WHEN cardinality(seen) >= p_enough;
        END IF;
    END LOOP;
    RETURN cardinality(seen);
END
$$""")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS fieldproof_ip_accounts(inet, timestamptz, timestamptz, bigint, integer, "
               "integer)")
