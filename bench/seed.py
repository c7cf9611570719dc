"""Bulk data for benchmarks, written with set-based SQL (the bench database only)."""
from __future__ import annotations

from sqlalchemy import text

# Ten city centres (WGS-84 lon, lat): Beijing, Shanghai, Guangzhou, Shenzhen, Chengdu, Hangzhou, Wuhan, Xi'an,
# Nanjing, Chongqing.
CITIES = [(116.397, 39.909), (121.474, 31.230), (113.264, 23.129), (114.058, 22.543), (104.066, 30.573),
          (120.155, 30.274), (114.305, 30.593), (108.940, 34.341), (118.797, 32.060), (106.551, 29.563)]
TASK_TYPES = ["store_visit", "flyer_run", "poster", "signup_drive", "shelf_audit", "other_offline"]


def bench_merchant(conn) -> int:
    """The id of the bench merchant (created once)."""
    conn.execute(text("INSERT INTO app_user (username, password_hash, role, display_name) "
                      "VALUES ('bench_merchant', 'x', 'merchant', 'bench') ON CONFLICT (username) DO NOTHING"))
    return conn.execute(text("SELECT id FROM app_user WHERE username = 'bench_merchant'")).scalar_one()


def published_tasks(conn, n: int) -> int:
    """Make sure at least ``n`` published 100 m circle tasks exist around ten cities; returns the count."""
    have = conn.execute(text("SELECT count(*) FROM task WHERE title LIKE 'bench %'")).scalar_one()
    if have >= n:
        return have
    merchant = bench_merchant(conn)
    lons = "ARRAY[" + ",".join(str(c[0]) for c in CITIES) + "]::float8[]"
    lats = "ARRAY[" + ",".join(str(c[1]) for c in CITIES) + "]::float8[]"
    types = "ARRAY[" + ",".join(f"'{t}'" for t in TASK_TYPES) + "]"
    # Constant arrays above are literals of this module, not user input.
    conn.execute(text(f"""
        INSERT INTO task (merchant_id, title, description, type, state, reward_fen, slots, slots_taken,
                          starts_at, ends_at, fence, center, fence_kind, radius_m, area_m2, hard_fence,
                          photos_min, video_required, min_credit)
        SELECT :m, 'bench ' || g, '', ({types})[1 + g % 6], 'published', 500 + (g * 37) % 3000, 5, 0,
               now() - interval '1 hour', now() + interval '60 days',
               ST_Buffer(c, 100), c, 'circle', 100, 31415.9, true, 1, false, 0
        FROM (SELECT g, ST_SetSRID(ST_MakePoint(({lons})[1 + g % 10] + (random() - 0.5) * 0.6,
                                                ({lats})[1 + g % 10] + (random() - 0.5) * 0.5), 4326)::geography c
              FROM generate_series(CAST(:a AS int), CAST(:b AS int)) g) s
    """), {"m": merchant, "a": have + 1, "b": n})
    conn.execute(text("ANALYZE task"))
    return n
