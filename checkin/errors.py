"""Check-in errors."""
from core.errors import Conflict, InvalidInput


class OutsideFence(InvalidInput):
    code = "outside_fence"
    detail = "You are outside this task's geofence."


class OutsideTimeWindow(Conflict):
    code = "outside_time_window"
    detail = "This task does not accept check-ins at this time."


class AlreadyCheckedIn(Conflict):
    code = "already_checked_in"
    detail = "This claim is already checked in."


class NotCheckedIn(Conflict):
    code = "not_checked_in"
    detail = "Check in before checking out."


class AlreadyCheckedOut(Conflict):
    code = "already_checked_out"
    detail = "This claim is already checked out."
