"""Distance from a fix to a task's fence: the function check-ins use (PostGIS on the spheroid), on odd fences."""
from checkin.service import _fence_distance
from tasks import service as task_service
from tasks.schemas import TaskCreate
from tests.fieldwork import task_body
from tests.helpers import make_user

LAT, LON = 39.9087, 116.3975
METRE_LAT = 1 / 111_195  # degrees of latitude per metre, near enough at 40° N for a 0.5 m tolerance


def _task(db, geofence):
    merchant = make_user(db, "merchant")
    return task_service.create(db_session=db, merchant=merchant, body=TaskCreate(**task_body(geofence=geofence)))


def test_circle_inside_and_outside(db):
    task = _task(db, {"center": [LON, LAT], "radius_m": 100})
    assert _fence_distance(db, task.id, LON, LAT)[0] == 0
    assert abs(_fence_distance(db, task.id, LON, LAT + 200 * METRE_LAT)[0] - 100) < 0.5


def test_multipolygon_point_in_the_second_part(db):
    d = 0.002
    sq = [[LON, LAT], [LON + d, LAT], [LON + d, LAT + d], [LON, LAT + d], [LON, LAT]]
    sq2 = [[x + 0.01, y] for x, y in sq]
    task = _task(db, {"type": "MultiPolygon", "coordinates": [[sq], [sq2]]})
    assert _fence_distance(db, task.id, sq2[0][0] + d / 2, LAT + d / 2)[0] == 0
    assert _fence_distance(db, task.id, LON + d + 0.004, LAT + d / 2)[0] > 300  # between the two parts
