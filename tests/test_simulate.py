"""The simulator: its pure parts (movement, GPS noise, photos) and a small real day through the real stack."""
from __future__ import annotations

import io
import math
import os
import random
from datetime import datetime, timedelta, timezone

import pytest

from evidence.hashing import hash_image
from evidence.match import compare
from sim import gps, photos, world
from sim.agents import FRAUD_KINDS, HONEST, travel_seconds
from sim.driver import cast

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)
STORE = world.DISTRICTS["wangfujing"]


def test_travel_speeds_are_walking_or_e_bike():
    rng = random.Random(1)
    for straight in (300.0, 800.0, 2500.0, 6000.0):
        for _ in range(50):
            seconds = travel_seconds(rng, straight)
            overhead = 60  # at least a minute to park, find the door
            speed = straight * 1.3 / max(1.0, seconds - overhead)
            assert speed <= 6.0 * 1.01, (straight, speed)
            if straight * 1.3 < 1200:
                assert speed <= 1.3 * 1.15 * 1.01  # walking
    assert travel_seconds(random.Random(2), 5000) < 5000 * 1.3 / 4.0 + 240  # rides, does not walk 5 km


def test_offset_and_distance_agree():
    lat, lon = world.offset(*STORE, 300.0, -400.0)
    assert abs(world.distance_m(*STORE, lat, lon) - 500.0) < 0.5


def test_honest_gps_noise_matches_reported_accuracy():
    rng = random.Random(3)
    phone = gps.Phone("dev-test-0001", "android")
    inside, accs, n = 0, [], 3000
    for _ in range(n):
        fix = gps.honest_fix(rng, phone, *STORE, T0, T0)
        assert fix["crs"] == "gcj02" and fix["mock_location"] is False
        wlat, wlon = gps.geocrs.gcj02_to_wgs84(fix["lat"], fix["lon"])
        err = world.distance_m(*STORE, wlat, wlon)
        accs.append(fix["accuracy_m"])
        inside += err <= fix["accuracy_m"]
    # Android accuracy is a 68 % radius: roughly that share lies within it (a few multipath fixes do not).
    assert 0.60 <= inside / n <= 0.72
    assert sum(5 <= a <= 30 for a in accs) / n > 0.9 and max(accs) <= 150 and min(accs) >= 5


def test_browser_fixes_are_wgs84_without_motion_fields():
    fix = gps.honest_fix(random.Random(4), gps.Phone("dev-test-0002", "browser"), *STORE, T0, T0)
    assert fix["crs"] == "wgs84" and fix["altitude"] is None and fix["speed"] is None and fix["bearing"] is None


def test_spoofed_fixes_carry_their_traits():
    rng, phone = random.Random(5), gps.Phone("dev-test-0003", "android")
    center = (39.9135, 116.4170)
    style = gps.SpoofStyle(constant_fields=True, pin_center=True, accuracy=3.0)
    a, b = (gps.spoof_fix(rng, phone, style, center, STORE, T0, T0) for _ in range(2))
    assert (a["lat"], a["lon"]) == center and (a["accuracy_m"], a["altitude"], a["speed"], a["bearing"]) == \
        (b["accuracy_m"], b["altitude"], b["speed"], b["bearing"])
    assert gps.spoof_fix(rng, phone, gps.SpoofStyle(mock_flag=True), center, STORE, T0, T0)["mock_location"] is True


def _hashes(data: bytes):
    return hash_image(data, with_variants=True)


def test_generated_scenes_are_unique_under_the_service_rule():
    scenes = [_hashes(photos.camera_jpeg(photos.scene(seed))) for seed in range(12)]
    for i in range(len(scenes)):
        for j in range(len(scenes)):
            if i != j:
                assert compare(scenes[i], scenes[j]) is None, (i, j)


@pytest.mark.parametrize("transform", photos.REUSE_TRANSFORMS)
def test_a_reused_transformed_photo_still_matches(transform):
    original = photos.camera_jpeg(photos.scene(99), T0)
    copy = photos.reuse(original, transform)
    assert compare(_hashes(copy), _hashes(original)) is not None


def test_visitors_of_one_storefront_photograph_the_same_scene_not_the_same_capture():
    from tests.test_evidence_capture import judge

    cam_a, cam_b = ("Xiaomi", "Redmi Note 12", "SN1"), ("OPPO", "Reno10", "SN2")
    for shop in (11, 12, 13):
        a = photos.camera_jpeg(photos.storefront(shop, 1), T0, camera=cam_a)
        b = photos.camera_jpeg(photos.storefront(shop, 2), T0 + timedelta(hours=3), camera=cam_b)
        verdict = judge(b, a)
        assert verdict is not None and verdict.kind == "same_scene", (shop, verdict)
        assert judge(photos.reuse(a, "crop5"), a).kind == "same_capture"


def test_scene_carries_capture_time_in_exif():
    from PIL import Image

    from evidence.exif import read_exif

    taken = T0.astimezone(timezone(timedelta(hours=8)))
    exif = read_exif(Image.open(io.BytesIO(photos.camera_jpeg(photos.scene(1), taken))))
    assert datetime.fromisoformat(exif["capture_time"]) == taken


def test_cast_has_every_kind_from_ten_workers():
    kinds = cast(12)
    assert len(kinds) == 12 and set(FRAUD_KINDS) <= set(kinds) and kinds.count("device_farm") >= 2
    big = cast(200)
    assert big.count(HONEST) >= 140


def test_a_small_day_through_the_real_stack():
    """12 workers, 3 simulated hours: no 5xx, ledger clean, every fraud kind caught at least partly. (Each visit
    also asks for camera nonces now, which at x400 costs simulated minutes: 2 hours left too few claims.)"""
    from sim import report
    from sim.driver import Options, Simulation

    from core.config import get_settings

    redis_db = (int(os.environ.get("FIELDPROOF_TEST_REDIS_DB", "15")) + 5) % 16
    opts = Options(workers=12, hours=3, seed=11, rate=400, database=f"{get_settings().database_name}_simtest",
                   redis_db=redis_db, progress=False)
    rep = report.build(Simulation(opts).run())
    print(report.render(rep))
    assert rep["errors_5xx"] == 0, rep["errors_5xx_samples"]
    assert rep["ledger_check"]["ok"], rep["ledger_check"]
    assert not rep["agent_failures"], rep["agent_failures"]
    assert rep["evidence_unprocessed"] == 0
    assert rep["requests"] > 100 and rep["claims_total"] >= 12
    for kind, k in rep["fraud"].items():
        if k["claims"]:
            assert k["claims_flagged"] >= 1, (kind, k)
    assert rep["honest"]["workers_flagged"] == 0, rep["honest"]
    assert rep["same_scene_honest"]["flagged_duplicate"] == 0, rep["same_scene_honest"]
    for transform, r in rep["reuse_by_transform"].items():  # every re-used photo caught, cropped and screenshots too
        assert r["caught"] == r["uploads"], (transform, r)
    assert math.isfinite(rep["requests_per_s_day"])
    cpu = rep["cpu"]  # the service's CPU per simulated request, with PostgreSQL's when it runs locally
    assert cpu["complete"] and cpu["per_request_ms"] > 0 and {"api", "worker", "beat"} <= set(cpu["run_by_process_s"])
    st = rep["storage"]  # what the day left on disk, for the capacity plan: rows of check-ins and photo files
    assert st["largest_tables_bytes"]["checkin"] > 0 and st["evidence_bytes"] > 0
    assert st["per_1000_workers_day_mb"]["evidence"] > 0 and st["per_1000_workers_day_mb"]["database"] > 0


def test_the_simulated_phones_drop_an_idle_connection_before_the_server_does():
    """At equal keep-alive timeouts a request can go out on a connection the server is closing: a transport error
    that failed `make bench`'s simulated day once in ~24,000 requests (two runs of two)."""
    import inspect

    import uvicorn

    from sim import client, stack

    assert client.KEEPALIVE_S < uvicorn.Config(app=None).timeout_keep_alive
    assert "timeout-keep-alive" not in inspect.getsource(stack)  # the stack runs uvicorn's default


def test_transport_errors_are_counted_exactly_from_many_threads():
    import threading

    from sim.client import Stats

    stats, barrier = Stats(), threading.Barrier(8)

    def hit() -> None:
        barrier.wait()
        for i in range(2000):
            stats.transport_error("POST /v1/claims/{id}/checkins", ConnectionResetError(i))

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stats.transport_errors == 16000 and len(stats.transport_error_samples) == 5
    assert stats.transport_error_samples[0]["error"].startswith("ConnectionResetError")
