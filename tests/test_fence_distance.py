"""Distance from a fix to a task's fence, as check-ins measure it (PostGIS on the spheroid), on odd fences."""
from datetime import timedelta

from checkin import service as checkins
from checkin.signals import Fix
from core.models import utcnow
from tasks import service as task_service
from tasks.models import Claim
from tasks.schemas import TaskCreate
from tests.fieldwork import task_body
from tests.helpers import make_user

LAT, LON = 39.9087, 116.3975
METRE_LAT = 1 / 111_195  # degrees of latitude per metre, near enough at 40° N for a 0.5 m tolerance


def _measurer(db, geofence):
    """distance(lon, lat): the check-in's own measure statement against a claim on a task with this fence."""
    task = task_service.create(db_session=db, merchant=make_user(db, "merchant"),
                               body=TaskCreate(**task_body(geofence=geofence)))
    worker = make_user(db, "worker")
    claim = Claim(task_id=task.id, worker_id=worker.id, state="claimed", expires_at=utcnow() + timedelta(hours=1),
                  risk_score=0, flags=[])
    db.add(claim)
    db.flush()

    def distance(lon: float, lat: float) -> float:
        fix = Fix(lat=lat, lon=lon, accuracy_m=10, client_time=utcnow(), server_time=utcnow(), device_id="d",
                  ip=None, provider="gps", mock_location=False)
        return checkins._measure(db, worker, claim.id, fix, f"{lat:.6f},{lon:.6f}", []).distance_m

    return distance


def test_circle_inside_and_outside(db):
    distance = _measurer(db, {"center": [LON, LAT], "radius_m": 100})
    assert distance(LON, LAT) == 0
    assert abs(distance(LON, LAT + 200 * METRE_LAT) - 100) < 0.5


def test_multipolygon_point_in_the_second_part(db):
    d = 0.002
    sq = [[LON, LAT], [LON + d, LAT], [LON + d, LAT + d], [LON, LAT + d], [LON, LAT]]
    sq2 = [[x + 0.01, y] for x, y in sq]
    distance = _measurer(db, {"type": "MultiPolygon", "coordinates": [[sq], [sq2]]})
    assert distance(sq2[0][0] + d / 2, LAT + d / 2) == 0
    assert distance(LON + d + 0.004, LAT + d / 2) > 300  # between the two parts
