"""Looking at etcd's keys directly (its JSON gRPC gateway), to see what GDTS left behind."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import aiohttp


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _prefix_end(prefix: bytes) -> bytes:
    # etcd's range end for "every key starting with prefix": the prefix with its last byte + 1.
    trimmed = prefix.rstrip(b"\xff")
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


async def keys_under(
    session: aiohttp.ClientSession,
    etcd_url: str,
    prefix: str,
    limit: int = 10_000,
    headers: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The keys starting with ``prefix`` (up to ``limit``), with their values (JSON decoded
    where they are JSON) and leases."""
    raw = prefix.encode()
    body = {"key": _b64(raw), "range_end": _b64(_prefix_end(raw)), "limit": limit}
    async with session.post(f"{etcd_url}/v3/kv/range", json=body, headers=headers) as resp:
        resp.raise_for_status()
        reply = await resp.json(content_type=None)
    samples = []
    for kv in reply.get("kvs", []):
        value = base64.b64decode(kv.get("value", "")).decode(errors="replace")
        try:
            decoded: Any = json.loads(value)
        except ValueError:
            decoded = value
        samples.append(
            {
                "key": base64.b64decode(kv["key"]).decode(errors="replace"),
                "value": decoded,
                "lease": kv.get("lease"),
            }
        )
    return samples


# etcd's default --max-txn-ops: the most puts one transaction may carry.
MAX_TXN_OPS = 128


async def put_all(
    session: aiohttp.ClientSession,
    etcd_url: str,
    pairs: list[tuple[bytes, bytes]],
    headers: Mapping[str, str] | None = None,
) -> None:
    """Write up to MAX_TXN_OPS keys in one transaction."""
    ops = [{"requestPut": {"key": _b64(key), "value": _b64(value)}} for key, value in pairs]
    async with session.post(
        f"{etcd_url}/v3/kv/txn", json={"success": ops}, headers=headers
    ) as resp:
        resp.raise_for_status()
        await resp.read()
