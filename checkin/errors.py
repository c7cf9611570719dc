"""Check-in errors."""
from core.errors import Conflict, InvalidInput


class OutsideFence(InvalidInput):
    code = "outside_fence"
    detail = "You are outside this task's geofence."


class FixInFuture(InvalidInput):
    code = "client_time_in_future"
    detail = "The fix is dated in the future; check the phone's clock."


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
