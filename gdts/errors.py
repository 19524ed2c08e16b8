"""Failures GDTS reports, one class each; the HTTP layer maps them to statuses in one place."""

from __future__ import annotations


class GdtsError(Exception):
    """Base class: every GDTS failure carries an HTTP status for the API edge."""

    http_status = 500


class InvalidFieldError(GdtsError):
    """A request or stored record has a bad field; the message always starts with the field name."""

    http_status = 400

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class NotFoundError(InvalidFieldError):
    """The request names something that does not exist (a job); the field says which."""

    http_status = 404


class ConflictError(InvalidFieldError):
    """The request would overwrite something it must not (a clone onto an existing job)."""

    http_status = 409


class NoLiveWorkerError(ConflictError):
    """A run asked for now that no worker would take: the job's host group has no live member."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(
            "name",
            f"{name!r} cannot run now: {reason}; start a worker with those labels, or change "
            "the job's hostGroup",
        )


class UnsupportedVersionError(InvalidFieldError):
    """A stored record was written by a newer GDTS; refuse it rather than drop unknown fields."""

    def __init__(self, found: object, supported: int) -> None:
        super().__init__(
            "v",
            f"record version {found!r} is newer than this GDTS understands ({supported}); "
            "upgrade this process",
        )


class StoreUnavailableError(GdtsError):
    """etcd or MongoDB did not answer; a server-side fault, not the caller's."""

    http_status = 503

    def __init__(self, store: str, detail: str) -> None:
        self.store = store
        super().__init__(f"{store} unavailable: {detail}")


class ConfigError(GdtsError):
    """Bad configuration; raised at start so the process stops before doing anything."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        super().__init__(f"config {key}: {problem}")


class UnauthorizedError(GdtsError):
    """The request proves no identity: no token or session, or one that is unknown or revoked."""

    http_status = 401


class ForbiddenError(GdtsError):
    """The caller is known but may not do this: their role, or someone else's job."""

    http_status = 403


class TooManyAttemptsError(GdtsError):
    """Too many failed logins from this user and address: wait before trying again."""

    http_status = 429

    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"too many failed logins; try again in {retry_after_s} s")


class NoSecretKeyError(InvalidFieldError):
    """This process has no secret key (secretKeys): it can neither store nor open a secret.
    The operator's to fix, not the caller's: 503, naming the config key."""

    http_status = 503

    def __init__(self, doing: str) -> None:
        super().__init__(
            "secretKeys", f"no secret key configured on this manager: cannot {doing} (see "
            "the README's Secrets)",
        )  # fmt: skip
