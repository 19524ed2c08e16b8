"""The MongoDB edge: one way to open the client, one mapping of its failures."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from gdts.errors import StoreUnavailableError

DUPLICATE_KEY = 11000


def open_mongo(uri: str, connect_timeout_ms: int) -> AsyncMongoClient[dict[str, Any]]:
    """Inert until first used: AsyncMongoClient connects in the background."""
    return AsyncMongoClient(
        uri,
        connectTimeoutMS=connect_timeout_ms,
        serverSelectionTimeoutMS=connect_timeout_ms,
        # One deadline for a whole operation, retries included: a stalled mongod gets a 503
        # after this long, not after several socket timeouts in a row.
        timeoutMS=max(connect_timeout_ms, 5000),
        retryWrites=True,
        tz_aware=True,
    )


@contextlib.contextmanager
def mongo_errors() -> Iterator[None]:
    """A failing MongoDB becomes StoreUnavailableError (503 at the API)."""
    try:
        yield
    except PyMongoError as exc:
        raise StoreUnavailableError("MongoDB", type(exc).__name__ + ": " + str(exc)) from exc
