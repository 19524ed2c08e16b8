"""The etcd edge: aetcd's client on a gRPC channel we open ourselves, a paged read at a single
revision, a resumable watch stream, a new auth token when etcd lets one expire, and the
mapping of etcd failures to StoreUnavailableError.

aetcd opens only a plaintext channel to one host; this module is the one place that builds the
channel (several endpoints through grpc's ``ipv4:``/``ipv6:`` targets, TLS with an optional client
certificate, keepalive pings so a dead connection is noticed) and keeps the rest of aetcd as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aetcd
import aetcd.exceptions
import grpc
from aetcd import rpc, utils, watcher

from gdts.errors import ConfigError, StoreUnavailableError
from gdts.rangebounds import RangeBounds
from gdts.tlsfiles import load_cert_chain

if TYPE_CHECKING:
    from gdts.config import StoreConfig

log = logging.getLogger(__name__)

# etcd 3.4 counts every key from a page's start to the prefix's end to answer each page, so
# small pages make a full read quadratic: 100,000 jobs took 2.1 s in pages of 1,000 and 0.3 s
# in pages of 10,000. A page too large for one gRPC message is split (see _read_pages).
PAGE_SIZE = 10_000
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_CHANNEL_OPTIONS = (
    # A partitioned peer sends no RST; pings are how a watch or keepalive stream learns it is dead.
    # etcd answers pings more often than every 5 s (or on a connection with no stream) with
    # GOAWAY "too_many_pings"; 6 s + 3 s still shows a dead link before a 10 s lease expires.
    ("grpc.keepalive_time_ms", 6_000),
    ("grpc.keepalive_timeout_ms", 3_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
    # Reconnect quickly after an etcd restart instead of grpc's default two-minute backoff cap.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
)


def channel_target(endpoints: Sequence[str], addresses: Mapping[str, str] | None = None) -> str:
    """A grpc target for the endpoints: one ``host:port``, or ``ipv4:a:p,b:p`` for several.
    grpc's multi-address targets take IP literals only: ``addresses`` maps host names to the
    addresses they were resolved to (see ``names_to_resolve``)."""
    resolved = addresses or {}
    hostports = [(resolved.get(h, h), p) for h, p in (_hostport(e) for e in endpoints)]
    if len(hostports) == 1:
        host, port = hostports[0]
        return f"[{host}]:{port}" if _ip_family(host) == 6 else f"{host}:{port}"
    families = {_ip_family(host) for host, _ in hostports}
    if families == {4}:
        return "ipv4:" + ",".join(f"{h}:{p}" for h, p in hostports)
    if families == {6}:
        return "ipv6:" + ",".join(f"[{h}]:{p}" for h, p in hostports)
    raise ConfigError(
        "etcdEndpoints", "several endpoints must all be IPv4 or all IPv6 addresses, not host names"
    )


def names_to_resolve(endpoints: Sequence[str]) -> list[str]:
    """Host names that must be resolved before several endpoints can share one channel."""
    hosts = [_hostport(e)[0] for e in endpoints]
    return [] if len(hosts) < 2 else [h for h in hosts if _ip_family(h) is None]


def _hostport(endpoint: str) -> tuple[str, int]:
    text = endpoint.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError("etcdEndpoints", f"{endpoint!r} is not host:port")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port is None:
        port = 2379
    if not 0 < port < 65536:
        raise ConfigError("etcdEndpoints", f"{endpoint!r} has a bad port")
    return parts.hostname, port


def _ip_family(host: str) -> int | None:
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


@dataclass(frozen=True)
class EtcdTls:
    """TLS to etcd, as PEM bytes: the CA that signed etcd's certificate, and this process's own
    certificate and key for an etcd that asks for client certificates.

    ``server_name`` is the name etcd's certificates are checked against. By default that is
    the endpoint's host; with several endpoints, the first endpoint's host for every member
    (one grpc channel checks one name), so each member's certificate must carry it: a cluster
    certificate listing every member's address, or one DNS name they all share.
    """

    ca: bytes
    cert: bytes | None = None
    key: bytes | None = field(default=None, repr=False)
    server_name: str = ""

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate and its key go together")

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )


class EtcdClient(aetcd.Client):
    """aetcd.Client whose channel is opened here; everything else is aetcd's."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float,
        username: str = "",
        password: str = "",
        tls: EtcdTls | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        super().__init__(
            timeout=timeout,  # type: ignore[arg-type]  # aetcd passes it straight to grpc
            username=username or None,
            password=password or None,
        )
        self._endpoints = list(endpoints)
        self._tls = tls
        self._channel_options = (
            *_CHANNEL_OPTIONS,
            ("grpc.max_receive_message_length", max_message_bytes),
        )
        self._auth_lock = asyncio.Lock()
        for endpoint in self._endpoints:
            _hostport(endpoint)  # a bad endpoint is a config error now, not at first use

    async def _target(self) -> str:
        loop = asyncio.get_running_loop()
        addresses = {}
        for name in names_to_resolve(self._endpoints):
            try:
                infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise StoreUnavailableError("etcd", f"cannot resolve {name}: {exc}") from exc
            addresses[name] = sorted(infos, key=lambda info: info[0] != socket.AF_INET)[0][4][0]
        return channel_target(self._endpoints, addresses)

    def _tls_options(self) -> tuple[tuple[str, object], ...]:
        assert self._tls is not None
        name = self._tls.server_name
        if not name and len(self._endpoints) > 1:
            # grpc would check the certificates against the whole "ipv4:a:p,b:p" target, which
            # no certificate names.
            name = _hostport(self._endpoints[0])[0]
        if not name:
            return self._channel_options
        return (*self._channel_options, ("grpc.ssl_target_name_override", name))

    @property
    def timeout(self) -> float:
        return float(self._timeout or 5.0)

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        if self._is_connecting:
            await asyncio.wait_for(self._connected.wait(), self._connect_wait_timeout)
            return
        self._is_connecting = True
        try:
            target = await self._target()
            # Only a client with a password pays for the interceptor (a task per call).
            interceptors = None if self._username is None else [_RenewRejectedToken(self)]
            if self._tls is None:
                self.channel = grpc.aio.insecure_channel(
                    target, options=self._channel_options, interceptors=interceptors
                )
            else:
                self.channel = grpc.aio.secure_channel(
                    target,
                    self._tls.credentials(),
                    options=self._tls_options(),
                    interceptors=interceptors,
                )
            if self._username is not None:
                self.auth_stub = rpc.AuthStub(self.channel)
                await self._authenticate()
            self.kvstub = rpc.KVStub(self.channel)
            self.clusterstub = rpc.ClusterStub(self.channel)
            self.leasestub = rpc.LeaseStub(self.channel)
            self.maintenancestub = rpc.MaintenanceStub(self.channel)
            self._watcher = watcher.Watcher(
                rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata
            )
            self._connected.set()
        except grpc.aio.AioRpcError as exc:
            raise StoreUnavailableError("etcd", exc.details() or exc.code().name) from exc
        finally:
            self._is_connecting = False

    async def _authenticate(self) -> None:
        assert self.auth_stub is not None
        reply = await self.auth_stub.Authenticate(
            rpc.AuthenticateRequest(name=self._username, password=self._password),
            timeout=self._timeout,
        )
        self.metadata = (("token", reply.token),)
        if self._watcher is not None:
            # aetcd's watcher keeps its own copy, for the next stream it opens.
            self._watcher._metadata = self.metadata

    async def _renew_token(self, rejected: str) -> str:
        """A token to use instead of ``rejected``, which etcd refused as expired. Calls that
        fail together authenticate once: etcd spends a bcrypt hash on every Authenticate."""
        async with self._auth_lock:
            if _token_in(self.metadata) == rejected:
                log.info("etcd auth token expired; authenticating again")
                await self._authenticate()
        return _token_in(self.metadata) or ""


def _token_in(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    return next((value for key, value in metadata or () if key == "token"), None)


def _token_expired(details: str) -> bool:
    # A simple token (etcd's default) lapses after --auth-token-ttl (5 min) unused, a JWT
    # after its ttl however busy the client is; etcd says the same for both (a watch create
    # puts the gRPC error's text in its cancel reason).
    return "invalid auth token" in details


class _RenewRejectedToken(grpc.aio.UnaryUnaryClientInterceptor):
    """Retries a unary call once with a new token when etcd refused its token as expired.

    Nothing is refreshed ahead of time: the token's lifetime is etcd's setting, unknown here.
    Streams need no retry: etcd (3.4) checks no token on a lease keepalive, and on a watch
    stream only when it creates a watch, so open streams outlive the token; watch_prefixes
    handles a creation refused this way. etcd refuses the token before it applies anything,
    so a refused write is safe to send again.
    """

    def __init__(self, client: EtcdClient) -> None:
        self._client = client

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[grpc.aio.Call]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> grpc.aio.Call:
        call = await continuation(client_call_details, request)
        sent = _token_in(client_call_details.metadata)
        if (
            sent is None  # Authenticate itself, or a client without a password
            or await call.code() != grpc.StatusCode.UNAUTHENTICATED
            or not _token_expired(await call.details() or "")
        ):
            return call
        token = await self._client._renew_token(sent)
        metadata = grpc.aio.Metadata(
            *((key, value) for key, value in client_call_details.metadata if key != "token"),
            ("token", token),
        )
        return await continuation(client_call_details._replace(metadata=metadata), request)


ETCD_ERRORS = (aetcd.exceptions.ClientError, grpc.aio.AioRpcError, asyncio.TimeoutError)


@contextlib.contextmanager
def etcd_errors() -> Iterator[None]:
    """Turn whatever etcd or grpc raised into StoreUnavailableError, with a readable detail."""
    try:
        yield
    except StoreUnavailableError:
        raise
    except grpc.aio.AioRpcError as exc:
        raise StoreUnavailableError("etcd", f"{exc.code().name}: {exc.details()}") from exc
    except aetcd.exceptions.ClientError as exc:
        raise StoreUnavailableError("etcd", str(exc) or type(exc).__name__) from exc
    except TimeoutError as exc:
        raise StoreUnavailableError("etcd", "request timed out") from exc


async def prefix_changed_since(
    client: EtcdClient, prefix: bytes, revision: int, count: int
) -> tuple[bool, int]:
    """Whether any key under ``prefix`` was written or deleted after ``revision``, given that
    it then held ``count`` keys; and the current revision. One transaction (one revision) asks
    for the number of keys now and the key written last (etcd sorts, one key comes back): a
    write shows in the second, a delete in the first. (A count with min_mod_revision would not
    do: etcd counts before it filters.)"""
    await client.connect()
    range_end = utils.prefix_range_end(prefix)
    now = rpc.RangeRequest(key=prefix, range_end=range_end, count_only=True)
    last_written = rpc.RangeRequest(
        key=prefix,
        range_end=range_end,
        keys_only=True,
        limit=1,
        sort_order=rpc.RangeRequest.DESCEND,
        sort_target=rpc.RangeRequest.MOD,
    )
    reply = await client.kvstub.Txn(
        rpc.TxnRequest(
            success=[rpc.RequestOp(request_range=now), rpc.RequestOp(request_range=last_written)]
        ),
        timeout=client.timeout,
        metadata=client.metadata,
    )
    total = reply.responses[0].response_range.count
    newest = reply.responses[1].response_range.kvs
    written = bool(newest) and newest[0].mod_revision > revision
    return written or total != count, reply.header.revision


async def first_key_and_count(client: EtcdClient, prefix: bytes) -> tuple[bytes | None, int]:
    """The first key under ``prefix`` (None: there is none) and how many keys are there, in
    one request (etcd counts the whole range whatever the limit)."""
    await client.connect()
    request = rpc.RangeRequest(
        key=prefix, range_end=utils.prefix_range_end(prefix), limit=1, keys_only=True
    )
    reply = await client.kvstub.Range(request, timeout=client.timeout, metadata=client.metadata)
    return (reply.kvs[0].key if reply.kvs else None), int(reply.count)


async def read_prefix(
    client: EtcdClient,
    prefix: bytes,
    page_size: int = PAGE_SIZE,
    *,
    start_after: bytes | None = None,
    limit: int | None = None,
    revision: int = 0,
    keys_only: bool = False,
    hint: bytes | None = None,
) -> tuple[list[rpc.KeyValue], int]:
    """Keys under ``prefix`` as of one revision, read in pages; returns (kvs, revision).
    ``start_after`` and ``limit`` select a window of them, in key order; ``revision``: as they
    were then (0: now); ``keys_only``: without their values; ``hint``: see RangeBounds."""
    kvs: list[rpc.KeyValue] = []

    async def take(page: Sequence[rpc.KeyValue], first: bool) -> None:
        if first:
            kvs.clear()
        kvs.extend(page)

    revision = await scan_prefix(
        client,
        prefix,
        take,
        page_size,
        start_after=start_after,
        limit=limit,
        revision=revision,
        keys_only=keys_only,
        hint=hint,
    )
    return kvs, revision


async def scan_prefix(
    client: EtcdClient,
    prefix: bytes,
    take: Callable[[Sequence[rpc.KeyValue], bool], Awaitable[None]],
    page_size: int = PAGE_SIZE,
    *,
    start_after: bytes | None = None,
    limit: int | None = None,
    revision: int = 0,
    keys_only: bool = False,
    hint: bytes | None = None,
) -> int:
    """``read_prefix`` a page at a time: ``take(page, first)`` gets each page as it arrives (so
    a million keys are never all held at once); returns the revision they were read at.

    Pages after the first are read at the first page's revision, so the pages are one
    consistent snapshot however large it is. If that revision is compacted mid-read, the read
    starts again, with ``first`` true: drop what the earlier pages gave. (A ``revision`` asked
    for that is compacted raises OUT_OF_RANGE: it cannot be read any more.)
    """
    await client.connect()
    first = prefix if start_after is None else start_after + b"\x00"
    while True:
        try:
            return await _read_pages(
                client, prefix, first, take, page_size, limit, revision, keys_only, hint
            )
        except grpc.aio.AioRpcError as exc:
            # OUT_OF_RANGE: revision compacted
            if exc.code() != grpc.StatusCode.OUT_OF_RANGE or revision:
                raise
            log.info("etcd compacted the snapshot revision during a paged read; reading again")


async def _read_pages(
    client: EtcdClient,
    prefix: bytes,
    first: bytes,
    take: Callable[[Sequence[rpc.KeyValue], bool], Awaitable[None]],
    page_size: int,
    limit: int | None,
    revision: int,
    keys_only: bool = False,
    hint: bytes | None = None,
) -> int:
    bounds = RangeBounds(prefix, first, hint)
    key, count = first, 0
    while True:
        want = page_size if limit is None else min(page_size, limit - count)
        end = bounds.end(key)
        try:
            reply = await client.kvstub.Range(
                rpc.RangeRequest(
                    key=key,
                    range_end=end,
                    limit=want,
                    revision=revision,
                    keys_only=keys_only,
                ),
                timeout=client.timeout,
                metadata=client.metadata,
            )
        except grpc.aio.AioRpcError as exc:
            # Larger than max_receive_message_length (jobs with long commands): smaller pages.
            if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or want == 1:
                raise
            page_size = max(1, want // 2)
            continue
        revision = revision or reply.header.revision
        kvs = reply.kvs
        await take(kvs, count == 0)
        count += len(kvs)
        if limit is not None and count >= limit:
            return revision
        bounds.heard([kvs[0].key, kvs[-1].key] if kvs else [], reply.more, want)
        if reply.more:
            key = kvs[-1].key + b"\x00"
        elif end >= bounds.prefix_end:
            return revision
        else:
            key = end


class WatchCompactedError(Exception):
    """The revision a watch asked for is compacted; the caller must read everything again."""

    def __init__(self, compact_revision: int) -> None:
        self.compact_revision = compact_revision
        super().__init__(f"watch revision compacted (now at {compact_revision})")


class WatchCanceledError(Exception):
    """etcd cancelled the watch (e.g. permission change); the caller starts over."""


@dataclass(frozen=True)
class WatchSpec:
    prefix: bytes
    start_revision: int
    deletes_only: bool = False  # filtered by etcd, so puts cost no traffic
    prev_kv: bool = False  # deletes then carry the deleted value and its lease
    range_end: bytes | None = None  # the keys from prefix up to this one (None: under prefix)


@dataclass(frozen=True)
class WatchEvent:
    spec_index: int
    deleted: bool
    key: bytes
    value: bytes  # for a delete with prev_kv: the deleted value
    lease: int  # the key's lease (for a delete with prev_kv: the deleted key's lease)
    mod_revision: int  # for a delete: the revision that deleted it
    create_revision: int = 0  # the revision that created the key (0 for a delete)


async def watch_prefixes(
    client: EtcdClient, specs: Sequence[WatchSpec]
) -> AsyncIterator[WatchEvent]:
    """Events under each prefix from its start revision, on one stream, in revision order per
    prefix. Ends (or raises) when the stream breaks; the caller resumes from the revisions it saw.

    aetcd's own watcher drops the stream's end and cannot say which revision to resume from, so
    this speaks the Watch RPC directly through aetcd's generated stubs.
    """
    await client.connect()
    creates = [
        rpc.WatchRequest(
            create_request=rpc.WatchCreateRequest(
                key=spec.prefix,
                range_end=spec.range_end or utils.prefix_range_end(spec.prefix),
                start_revision=spec.start_revision,
                watch_id=index + 1,
                prev_kv=spec.prev_kv,
                filters=[rpc.WatchCreateRequest.FilterType.NOPUT] if spec.deletes_only else [],
            )
        )
        for index, spec in enumerate(specs)
    ]
    hold_open = asyncio.Event()

    async def requests() -> AsyncIterator[rpc.WatchRequest]:
        for request in creates:
            yield request
        await hold_open.wait()  # closing the request stream would end the watch

    # "hasleader": a member cut off from its cluster ends the stream instead of keeping a
    # healthy-looking watch that never delivers another event.
    metadata = (*(client.metadata or ()), ("hasleader", "true"))
    sent = _token_in(metadata)
    call = rpc.WatchStub(client.channel).Watch(requests(), metadata=metadata)
    try:
        async for reply in call:
            if reply.compact_revision:
                raise WatchCompactedError(reply.compact_revision)
            if reply.canceled and sent is not None and _token_expired(reply.cancel_reason):
                # Refused at creation, before any event: end the stream for the caller to
                # resume with a new token, instead of raising and so reading everything again.
                await client._renew_token(sent)
                return
            if reply.canceled:
                raise WatchCanceledError(reply.cancel_reason or "watch canceled by etcd")
            for event in reply.events:
                deleted = event.type == rpc.Event.DELETE
                source = event.prev_kv if deleted and event.HasField("prev_kv") else event.kv
                yield WatchEvent(
                    spec_index=reply.watch_id - 1,
                    deleted=deleted,
                    key=event.kv.key,
                    value=source.value,
                    lease=source.lease,
                    mod_revision=event.kv.mod_revision,
                    create_revision=event.kv.create_revision,
                )
    finally:
        hold_open.set()
        call.cancel()


def open_etcd(config: StoreConfig) -> EtcdClient:
    """The client a manager or worker uses, as its config describes it. Certificate files are
    read now, so a missing or broken one stops the process at start, naming its key."""
    return EtcdClient(
        config.etcd_endpoints,
        timeout=config.etcd_dial_timeout / 1000,
        username=config.etcd_username,
        password=config.etcd_password,
        tls=read_etcd_tls(config),
    )


def read_etcd_tls(config: StoreConfig) -> EtcdTls | None:
    """The TLS material the config names, checked; None for a plaintext connection."""
    if not config.etcd_ca_file:
        return None
    ca = _read_pem("etcdCaFile", config.etcd_ca_file)
    # grpc takes the PEM as it is and only fails at the first handshake, with a message that
    # names no file: parse everything here instead.
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=ca.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(
            "etcdCaFile", f"{config.etcd_ca_file} holds no PEM certificate ({exc})"
        ) from None
    if not config.etcd_cert_file:
        return EtcdTls(ca, server_name=config.etcd_server_name)
    cert = _read_pem("etcdCertFile", config.etcd_cert_file)
    key = _read_pem("etcdKeyFile", config.etcd_key_file)
    # grpc cannot use an encrypted key either; check the pair the same way as HTTPS does.
    load_cert_chain(
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT),
        "etcdCertFile", config.etcd_cert_file, "etcdKeyFile", config.etcd_key_file,
    )  # fmt: skip
    return EtcdTls(ca, cert, key, server_name=config.etcd_server_name)


def _read_pem(key: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path} ({exc.strerror})") from None
