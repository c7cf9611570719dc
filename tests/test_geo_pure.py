"""Coordinate systems, the China outline, fences and the coords CLI (no database)."""
from __future__ import annotations

import io
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.cli import build_parser
from core.errors import InvalidInput
from geo import crs
from geo.fence import area_m2, haversine_m, parse_fence

INSIDE = {"Beijing": (39.9087, 116.3975), "Shanghai": (31.2304, 121.4737), "Guangzhou": (23.1291, 113.2644),
          "Shenzhen": (22.5431, 114.0579), "Urumqi": (43.8256, 87.6168), "Lhasa": (29.6520, 91.1721),
          "Harbin": (45.8038, 126.5350), "Kunming": (25.0389, 102.7183), "Haikou": (20.0440, 110.1999),
          "Xiamen": (24.4798, 118.0894), "Dandong": (40.1290, 124.3947)}
OUTSIDE = {"Seoul": (37.5665, 126.9780), "Hanoi": (21.0278, 105.8342), "Taipei": (25.0330, 121.5654),
           "Hong Kong": (22.3193, 114.1694), "Macau": (22.1987, 113.5439), "Ulaanbaatar": (47.8864, 106.9057),
           "Tokyo": (35.6762, 139.6503), "Pyongyang": (39.0392, 125.7625), "Kinmen": (24.4367, 118.3186)}


@pytest.mark.parametrize("name", INSIDE)
def test_mainland_cities_are_shifted(name):
    lat, lon = INSIDE[name]
    assert crs.in_mainland_china(lat, lon)
    glat, glon = crs.wgs84_to_gcj02(lat, lon)
    shift = haversine_m(lon, lat, glon, glat)
    assert 50 < shift < 1000, shift


@pytest.mark.parametrize("name", OUTSIDE)
def test_neighbours_are_not_shifted(name):
    lat, lon = OUTSIDE[name]
    assert not crs.in_mainland_china(lat, lon)
    assert crs.wgs84_to_gcj02(lat, lon) == (lat, lon)
    assert crs.bd09_to_wgs84(lat, lon) == (lat, lon)


def test_known_tiananmen_offset():
    # Tian'anmen: the widely published WGS-84 → GCJ-02 pair.
    glat, glon = crs.wgs84_to_gcj02(39.9087, 116.3975)
    assert abs(glat - 39.91010) < 2e-5 and abs(glon - 116.40374) < 2e-5


china = st.tuples(st.floats(21.0, 45.0), st.floats(100.0, 122.0)).filter(lambda p: crs.in_mainland_china(*p))


def test_border_point_round_trips():
    # Found by hypothesis: a mainland point near the Mongolian border whose GCJ-02 image lies outside the outline.
    lat, lon = 42.5234375, 100.3125
    assert crs.in_mainland_china(lat, lon)
    back = crs.gcj02_to_wgs84(*crs.wgs84_to_gcj02(lat, lon))
    assert abs(back[0] - lat) < 1e-7 and abs(back[1] - lon) < 1e-7


@settings(max_examples=200, deadline=None)
@given(china)
def test_inverses_round_trip_to_1e7(p):
    lat, lon = p
    for fwd, inv in ((crs.wgs84_to_gcj02, crs.gcj02_to_wgs84), (crs.wgs84_to_bd09, crs.bd09_to_wgs84),
                     (crs.gcj02_to_bd09, crs.bd09_to_gcj02)):
        back = inv(*fwd(lat, lon))
        assert abs(back[0] - lat) < 1e-7 and abs(back[1] - lon) < 1e-7


@pytest.mark.parametrize("bad", [(math.nan, 116.0), (39.0, math.inf), (116.4, 39.9 + 200)])
def test_bad_coordinates_rejected(bad):
    with pytest.raises(InvalidInput) as exc:
        crs.to_wgs84(*bad, "gcj02")
    assert exc.value.code == "invalid_coordinates"


def test_unknown_crs():
    with pytest.raises(InvalidInput) as exc:
        crs.convert(39.9, 116.4, "epsg3857", "wgs84")
    assert exc.value.code == "invalid_crs"


def test_circle_fence_area():
    # Distances to fences are PostGIS's on the spheroid: tests/test_fence_distance.py.
    f = parse_fence({"center": [116.3975, 39.9087], "radius_m": 100})
    assert abs(area_m2(f.geometry) - math.pi * 100**2) / (math.pi * 100**2) < 0.01


def test_gcj02_polygon_is_stored_in_wgs84():
    lat, lon, d = 39.9087, 116.3975, 0.001
    ring = [[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d], [lon - d, lat - d]]
    gcj_ring = [list(reversed(crs.wgs84_to_gcj02(y, x))) for x, y in ring]
    f = parse_fence({"type": "Polygon", "coordinates": [gcj_ring]}, "gcj02")
    assert abs(f.center[0] - lon) < 1e-6 and abs(f.center[1] - lat) < 1e-6
    out = f.to_geojson("gcj02")["coordinates"][0]
    assert min(abs(p[0] - gcj_ring[0][0]) + abs(p[1] - gcj_ring[0][1]) for p in out) < 1e-8


def test_geojson_output_follows_rfc7946_winding():
    lat, lon, d = 39.9087, 116.3975, 0.002
    clockwise = [[lon, lat], [lon, lat + d], [lon + d, lat + d], [lon + d, lat], [lon, lat]]
    ring = parse_fence({"type": "Polygon", "coordinates": [clockwise]}).to_geojson()["coordinates"][0]
    signed = sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(ring, ring[1:]))
    assert signed > 0  # counter-clockwise exterior


def test_small_repair_is_accepted_and_multipolygon_works():
    lat, lon, d = 39.9087, 116.3975, 0.002
    # a square with a tiny spike that self-touches: repair changes area by far less than 1 %
    sq = [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]
    assert parse_fence({"type": "Polygon", "coordinates": [sq + [[lon, lat]]]}).kind == "polygon"
    sq2 = [[x + 0.01, y] for x, y in sq]
    multi = parse_fence({"type": "MultiPolygon", "coordinates": [[sq], [sq2]]})
    assert multi.kind == "polygon" and len(multi.geometry.geoms) == 2


def test_polygon_positions_are_read_alike_in_every_crs():
    """An altitude is dropped whatever the CRS (in WGS-84 it reached PostGIS and failed there as a generic error,
    while GCJ-02 and BD-09 dropped it); true is not a coordinate (it read as 1), nor is a badly nested ring."""
    lat, lon, d = 39.9087, 116.3975, 0.002
    flat = [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]
    high = [[x, y, 5.0] for x, y in flat]
    for name in ("wgs84", "gcj02", "bd09"):
        fence = parse_fence({"type": "Polygon", "coordinates": [high]}, name)
        assert not fence.geometry.has_z
        assert fence.geometry.equals(parse_fence({"type": "Polygon", "coordinates": [flat]}, name).geometry)
        multi = parse_fence({"type": "MultiPolygon", "coordinates": [[high]]}, name)
        assert not multi.geometry.has_z
        for bad in ([[[True, lat]] + flat[1:]], [flat[0]], flat, [[[lon, lat, 1, 2]] + flat[1:]],
                    [[[lon, "39.9"]] + flat[1:]]):
            with pytest.raises(InvalidInput):
                parse_fence({"type": "Polygon", "coordinates": bad}, name)


def _run_cli(argv, stdin=None, monkeypatch=None, capsys=None):
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    args = build_parser().parse_args(argv)
    code = args.func(args)
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_cli_single_and_batch(monkeypatch, capsys):
    code, out = _run_cli(["coords", "convert", "--from", "wgs84", "--to", "gcj02", "39.9087", "116.3975"],
                         capsys=capsys)
    assert code == 0 and abs(out[0]["lat"] - 39.91010) < 2e-5
    code, out = _run_cli(["coords", "convert", "--from", "gcj02", "--to", "wgs84", "-"],
                         stdin=f"{out[0]['lat']} {out[0]['lon']}\n37.5665,126.978\nnonsense\n",
                         monkeypatch=monkeypatch, capsys=capsys)
    assert code == 1
    assert abs(out[0]["lat"] - 39.9087) < 1e-7 and abs(out[0]["lon"] - 116.3975) < 1e-7
    assert out[1] == {"lat": 37.5665, "lon": 126.978}
    assert out[2]["line"] == 3 and "error" in out[2]


def test_one_point_conversion_matches_the_array_path_everywhere():
    """crs.convert (plain floats, the check-in's path) and convert_arrays (numpy) are the same formulas: every
    direction agrees to 1e-12° on points in and around China and elsewhere, border cases included."""
    import random

    from geo import crs

    rng = random.Random(7)
    points = [(rng.uniform(18, 54), rng.uniform(73, 135)) for _ in range(1500)]
    points += [(rng.uniform(-89, 89), rng.uniform(-179, 179)) for _ in range(300)]
    points += [(22.54, 114.06), (22.27, 114.17), (40.0, 124.4), (43.0, 87.6)]  # Shenzhen/HK border, Dandong
    for lat, lon in points:
        for src in crs.SUPPORTED_CRS:
            for dst in crs.SUPPORTED_CRS:
                one = crs.convert(lat, lon, src, dst)
                xs, ys = crs.convert_arrays([lon], [lat], src, dst)
                assert abs(one[0] - ys[0]) < 1e-12 and abs(one[1] - xs[0]) < 1e-12, (lat, lon, src, dst)


def test_fence_geojson_from_stored_bytes_is_cached_and_equal():
    """The hall's fences come from their stored (E)WKB through a per-process cache: the same GeoJSON as
    converting the geometry, for WKB bytes and EWKB hex (as PostGIS returns it), a polygon and a multipolygon, in
    every crs; the conversion runs once per (bytes, crs); what a caller gets cannot change the cached value."""
    import json

    import shapely
    from geoalchemy2.elements import WKBElement
    from geoalchemy2.shape import from_shape
    from shapely.geometry import MultiPolygon, Point

    from api.views import _geofence
    from geo import geojson

    circle = Point(116.40, 39.90).buffer(0.002, quad_segs=16)
    two = MultiPolygon([circle, Point(116.41, 39.91).buffer(0.001, quad_segs=4)])
    geojson._fence_geojson_of.cache_clear()
    for fence in (circle, two):
        for system in ("wgs84", "gcj02", "bd09"):
            expected = json.dumps(geojson.fence_geojson(fence, system))
            for wkb in (shapely.to_wkb(fence), shapely.to_wkb(fence, hex=True, include_srid=True)):
                first, again = geojson.fence_geojson_of_wkb(wkb, system), geojson.fence_geojson_of_wkb(wkb, system)
                assert json.dumps(first) == json.dumps(again) == expected and first is not again
                first["coordinates"] = None  # a caller changing its copy
                assert json.dumps(geojson.fence_geojson_of_wkb(wkb, system)) == expected
            for element in (from_shape(fence, srid=4326), WKBElement(shapely.to_wkb(fence), srid=4326)):
                assert json.dumps(_geofence(element, system)) == expected  # as api.views renders a task
    info = geojson._fence_geojson_of.cache_info()
    assert info.misses == 12 and info.hits >= 36
    assert isinstance(geojson.fence_geojson_of_wkb(shapely.to_wkb(two))["coordinates"][0], tuple)  # no lists inside
