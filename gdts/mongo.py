"""The MongoDB edge: one way to open the client, one mapping of its failures."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from gdts.errors import StoreUnavailableError

DUPLICATE_KEY = 11000
# A retention of 0 days (keep for ever): the largest expiry MongoDB accepts, 68 years.
NEVER_EXPIRE_S = 2**31 - 1


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


async def keep_for_days(
    collection: AsyncCollection[dict[str, Any]],
    field: str,
    index_name: str,
    days: int,
    direction: int = ASCENDING,
) -> None:
    """Documents whose date ``field`` is older than ``days`` (0: never) go, through a TTL index,
    in MongoDB's own background deletes (never a request's or a worker's write). A changed
    setting changes the index in place (collMod), keeping it; so does an index of that name
    made before without expiry (MongoDB 5.1 and later turn it into a TTL index)."""
    expire_s = days * 86400 if days else NEVER_EXPIRE_S
    info = await collection.index_information()
    if index_name not in info:
        await collection.create_index(
            [(field, direction)], name=index_name, expireAfterSeconds=expire_s
        )
    elif info[index_name].get("expireAfterSeconds") != expire_s:
        await collection.database.command(
            "collMod", collection.name, index={"name": index_name, "expireAfterSeconds": expire_s}
        )
