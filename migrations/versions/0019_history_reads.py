"""history_reads: a worker's latest fixes and the other accounts on a device, read in index order and stopped

The check-in's measure read two of its history figures in SQL whose cost grew with the worker's history:

* the worker's latest fixes (``ORDER BY client_time DESC LIMIT n``): planned generically, the statistics promise a
  few fixes per worker, so the planner appended every fix of the worker in the 92-day window and sorted them
  (a worker with 2,000 fixes: 0.75 ms and a buffer a fix) instead of walking the (worker_id, client_time) index
  newest first across the months (Merge Append) and stopping at n;
* other accounts on this device (``SELECT DISTINCT worker_id .. worker_id <> w LIMIT cap``): the (device_id,
  worker_id) index found the device, then every fix on it was read and the worker's own filtered out (the same
  2,000 fixes on the worker's own phone: 0.35 ms).

``fieldproof_recent_fixes`` is the first read with ``enable_sort = off`` (the ordered walk is then the only cheap
plan, whatever the statistics say; a function's SET clause is undone when it returns): the same JSON, the newest
n rows of the window read (plus, where the window starts inside a month, that month's fixes of the worker newer by
client time but older than the window, which the walk meets first and the filter drops).
``fieldproof_device_accounts`` counts distinct other accounts by probing the index: the lowest worker id above the
last one found, with a fix on the device in the window, one index descent each; the worker's own fixes in the
window are stepped over in one probe (a probe still reads, and drops, fixes outside the window in the months the
window touches: the index does not hold server_time). At most ``cap`` + 1 probes; the answer is the old count's
(``tests/test_checkin_api.py`` compares both on random histories; a NULL cap counts everyone, as LIMIT NULL did,
and a NULL worker finds no one, as ``worker_id <> NULL`` did).

Revision ID: 0019_history_reads
Revises: 0018_ip_accounts_ordered
"""
from alembic import op

revision = '0019_history_reads'
down_revision = '0018_ip_accounts_ordered'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
CREATE OR REPLACE FUNCTION fieldproof_recent_fixes(p_worker bigint, p_since timestamptz, p_until timestamptz,
                                                   p_n integer)
RETURNS json LANGUAGE plpgsql STABLE SET enable_sort = off AS $$
BEGIN
    RETURN (SELECT coalesce(json_agg(r ORDER BY r.client_time DESC), '[]')
              FROM (SELECT lat, lon, accuracy_m, client_time, altitude, speed, bearing, worker_id FROM checkin
                     WHERE worker_id = p_worker AND server_time BETWEEN p_since AND p_until
                     ORDER BY client_time DESC LIMIT p_n) r);
END
$$""")
    op.execute("""
CREATE OR REPLACE FUNCTION fieldproof_device_accounts(p_device text, p_since timestamptz, p_until timestamptz,
                                                      p_worker bigint, p_cap integer)
RETURNS integer LANGUAGE plpgsql STABLE SET enable_sort = off AS $$
DECLARE
    found_n integer := 0;
    last bigint := -9223372036854775808;
    w bigint;
BEGIN
    IF p_worker IS NULL THEN
        RETURN 0;
    END IF;
    WHILE p_cap IS NULL OR found_n < p_cap LOOP
        w := (SELECT worker_id FROM checkin
               WHERE device_id = p_device AND worker_id > last AND server_time BETWEEN p_since AND p_until
               ORDER BY worker_id LIMIT 1);
        EXIT WHEN w IS NULL;
        IF w <> p_worker THEN
            found_n := found_n + 1;
        END IF;
        last := w;
    END LOOP;
    RETURN found_n;
END
$$""")


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS fieldproof_recent_fixes(bigint, timestamptz, timestamptz, integer)")
    op.execute("DROP FUNCTION IF EXISTS fieldproof_device_accounts(text, timestamptz, timestamptz, bigint, integer)")
