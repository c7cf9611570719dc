"""Account and authentication errors."""
from core.errors import Conflict, Forbidden, InvalidInput, RateLimited, Unauthenticated


class InvalidCredentials(Unauthenticated):
    code = "invalid_credentials"
    detail = "Wrong username or password."


class InvalidToken(Unauthenticated):
    code = "invalid_token"
    detail = "The token is invalid or expired."


class LoginLocked(RateLimited):
    code = "login_locked"
    detail = "Too many failed logins; try again later."


class UserFrozen(Forbidden):
    code = "user_frozen"
    detail = "This account is frozen."


class UsernameTaken(Conflict):
    code = "username_taken"
    detail = "This username is already taken."


class RoleNotAllowed(InvalidInput):
    code = "role_not_allowed"
    detail = "Only worker and merchant accounts can register; ops accounts are created by an admin."


class WeakPassword(InvalidInput):
    code = "weak_password"
    detail = "Passwords need at least 8 characters."


class WrongRole(Forbidden):
    code = "wrong_role"
    detail = "Your role may not do this."
