"""Configuration for the manager and the worker: JSON file keys (the original GDTS's where they
exist), overridden by ``GDTS_*`` environment variables. Bad config stops the process at start."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from gdts.cron import CronError, check_zone
from gdts.errors import ConfigError, InvalidFieldError
from gdts.routing import MAX_WEIGHT, parse_labels
from gdts.runlimits import RunLimits, parse_limits
from gdts.secretbox import KeyRing, parse_key_ring


@dataclass(frozen=True)
class StoreConfig:
    """Keys both processes share: where etcd and MongoDB are."""

    etcd_endpoints: tuple[str, ...] = ("127.0.0.1:2379",)
    etcd_dial_timeout: int = 5000  # ms, also the deadline of each etcd request
    etcd_prefix: str = "/gdts/"
    etcd_username: str = ""
    etcd_password: str = dataclasses.field(default="", repr=False)
    # Client TLS to etcd: the CA that signed etcd's certificate, and this process's own
    # certificate and key when etcd asks for client certificates. Empty: plaintext.
    etcd_ca_file: str = ""
    etcd_cert_file: str = ""
    etcd_key_file: str = ""
    # The name etcd's certificates are checked against (default: the first endpoint's host).
    etcd_server_name: str = ""
    mongodb_uri: str = dataclasses.field(default="mongodb://127.0.0.1:27017", repr=False)
    mongodb_connect_timeout: int = 5000  # ms
    mongodb_database: str = "gdts"
    log_level: str = "INFO"
    log_format: str = "text"  # or "json": one JSON object per line
    # The keys that seal and open the teams' secrets (see gdts.secretbox): [{"id", "key"}], the
    # first seals. GDTS_SECRET_KEYS (the same JSON) replaces the file's list. None: no secrets.
    secret_keys: tuple[dict[str, str], ...] = dataclasses.field(default=(), repr=False)

    def secret_key_ring(self) -> KeyRing:
        return parse_key_ring(self.secret_keys)

    def validate(self) -> None:
        self.secret_key_ring()
        if self.log_format not in ("text", "json"):
            raise ConfigError("logFormat", f"must be text or json, got {self.log_format!r}")
        if not self.etcd_endpoints:
            raise ConfigError("etcdEndpoints", "must list at least one endpoint")
        _positive(self, "etcd_dial_timeout", "mongodb_connect_timeout")
        if bool(self.etcd_cert_file) != bool(self.etcd_key_file):
            raise ConfigError("etcdCertFile", "etcdCertFile and etcdKeyFile go together")
        if self.etcd_cert_file and not self.etcd_ca_file:
            # The certificate would go unused: without a CA the connection is plaintext.
            raise ConfigError("etcdCaFile", "must be set when etcdCertFile is")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(
                "logLevel", f"must be DEBUG, INFO, WARNING or ERROR, got {self.log_level!r}"
            )


@dataclass(frozen=True)
class ManagerConfig(StoreConfig):
    api_host: str = "0.0.0.0"
    api_port: int = 8070
    # Accepted so the original GDTS's manager.json loads; requests are bounded by the store
    # deadlines (etcdDialTimeout, mongodbConnectTimeout) instead.
    api_read_timeout: int = 5000
    api_write_timeout: int = 5000
    webroot: str = "./webroot"
    kill_marker_ttl: int = 10  # s; how long a kill marker lives in etcd
    default_timezone: str = "UTC"  # a saved job that names no timezone gets this one
    # Authentication. Off only for a lab: every request then acts as an admin.
    auth_enabled: bool = True
    admin_username: str = "admin"
    # Creates the admin at first start (no such user yet); empty: a generated password is
    # printed once.
    admin_password: str = dataclasses.field(default="", repr=False)
    # An API token for the admin that this manager accepts (stored hashed): for scripts.
    admin_token: str = dataclasses.field(default="", repr=False)
    session_ttl: int = 12 * 3600  # s a console login lasts
    # Peers whose X-Forwarded-For names the real client (nginx): audit and login limits use it.
    trusted_proxies: tuple[str, ...] = ()
    tls_cert_file: str = ""  # HTTPS for the API and console when both are set
    tls_key_file: str = ""
    # Notifications (see the README): the console's address as operators reach it, for the
    # link in each message; how often the notifier looks for work; how a failed delivery is
    # tried again (doubling from notifyRetryBackoff up to notifyRetryMaxBackoff, then given up
    # after notifyMaxTries, recorded as failed); an extra CA bundle for SMTP and HTTPS servers
    # with a private CA. notifyEnabled: false leaves delivery to the other managers.
    public_url: str = ""
    notify_enabled: bool = True
    notify_poll_interval: int = 1000  # ms
    notify_timeout: int = 10_000  # ms one delivery may take
    notify_retry_backoff: int = 5000  # ms
    notify_retry_max_backoff: int = 300_000  # ms
    notify_max_tries: int = 12
    notify_ca_file: str = ""
    notify_outbox_retention: int = 30  # days a sent or failed event stays in the outbox
    log_retention_days: int = 30  # days a run stays in the run log; 0: for ever
    audit_retention_days: int = 365  # days an audit entry stays; 0: for ever
    # s between two passes of the clean-up (keepRuns, purges; see gdts.manager.retention)
    retention_interval: int = 60

    def validate(self) -> None:
        super().validate()
        if not 0 < self.api_port < 65536:
            raise ConfigError("apiPort", f"must be 1-65535, got {self.api_port}")
        try:
            check_zone(self.default_timezone)
        except CronError as exc:
            raise ConfigError("defaultTimezone", exc.problem) from None
        _positive(self, "api_read_timeout", "api_write_timeout", "kill_marker_ttl", "session_ttl",
                  "notify_poll_interval", "notify_timeout", "notify_retry_backoff",
                  "notify_retry_max_backoff", "notify_max_tries",
                  "notify_outbox_retention", "retention_interval")  # fmt: skip
        for key, days in (("logRetentionDays", self.log_retention_days),
                          ("auditRetentionDays", self.audit_retention_days)):  # fmt: skip
            if not 0 <= days <= MAX_RETENTION_DAYS:
                raise ConfigError(key, f"must be 0 (keep for ever) to {MAX_RETENTION_DAYS}, "
                                  f"got {days}")  # fmt: skip
        if self.notify_ca_file and not os.path.isfile(self.notify_ca_file):
            raise ConfigError("notifyCaFile", f"{self.notify_ca_file!r} is not a readable file")
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise ConfigError("publicUrl", f"must start with http:// or https://, got "
                              f"{self.public_url!r}")  # fmt: skip
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError("tlsCertFile", "tlsCertFile and tlsKeyFile go together")


@dataclass(frozen=True)
class WorkerConfig(StoreConfig):
    worker_id: str = ""  # default: <hostname>:<pid>
    bash_path: str = "/bin/bash"
    job_log_batch_size: int = 100
    job_log_commit_timeout: int = 1000  # ms a result may wait for its batch to fill
    job_log_buffer_limit: int = 100_000  # results held while MongoDB is unreachable
    job_log_buffer_bytes: int = 64 * 1024 * 1024  # and at most this much of them, in memory
    spill_limit_bytes: int = 1024 * 1024 * 1024  # results waiting on disk, at most
    worker_lease_ttl: int = 10  # s
    kill_grace_period: int = 5000  # ms between SIGTERM and SIGKILL
    drain_timeout: int = 30_000  # ms running jobs get to finish on SIGTERM
    start_window: int = 10_000  # ms after its planned time a tick may still start
    busy_wait: int = 1000  # ms a tick waits for the job's previous run to end before skipping
    # Well above normal fire lag: a non-owner that steps in while the owner is merely busy costs
    # a transaction that loses. An owner that is gone costs its ticks this much lateness.
    takeover_delay: int = 2000  # ms a non-owner waits for the owner's claim before stepping in
    output_limit: int = 1024 * 1024  # bytes of output kept per run
    # A run going on for liveOutputAfter ms has what it prints written to MongoDB every
    # liveOutputInterval ms while it goes on (see gdts.worker.liveflush).
    live_output_interval: int = 500
    live_output_after: int = 1000
    spill_dir: str = "var/spill"  # results MongoDB could not take yet, on local disk
    http_listen: str = ""  # host:port for /health/* and /metrics; empty: no listener
    clock_skew_warning: int = 1000  # ms off MongoDB's clock before the worker warns
    clock_offset: int = 0  # ms added to this worker's clock; for fault tests only
    # The user jobs run as. A worker started as root refuses to run without one, unless
    # allowRoot says that running jobs as root is intended.
    run_as: str = ""
    allow_root: bool = False
    # Addresses or networks http jobs may reach although they are not public (loopback,
    # link-local, private): by default none (see gdts.worker.egress).
    http_job_allow: tuple[str, ...] = ()
    # A uid of its own for every run, from this range (LOW-HIGH, uids no account uses): runs
    # cannot see or signal each other, and the worker finds and kills every process of a run.
    # Needs a worker started as root; replaces runAs.
    run_uid_range: str = ""
    run_dir: str = "var/runs"  # each run's working directory (its HOME and TMPDIR) goes here
    # Runs at once, claims on their way included; 0: 256 per core (never more than runUidRange
    # holds). A worker at its cap claims nothing until a run ends.
    max_concurrent_runs: int = 0
    # A run's limits where its job sets none (0: none), and the most a job may ask for (0: no
    # ceiling); see gdts.runlimits.
    run_memory_mb: int = 0
    run_processes: int = 512
    run_cpu_seconds: int = 0
    run_open_files: int = 1024
    max_run_memory_mb: int = 0
    max_run_processes: int = 0
    max_run_cpu_seconds: int = 0
    max_run_open_files: int = 0
    # Where jobs may run (see gdts.routing): labels a job's hostGroup selects this worker by,
    # and its share of a weighted job's ticks.
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    weight: int = 1

    def run_limit_defaults(self) -> RunLimits:
        return _limits(self.run_memory_mb, self.run_processes, self.run_cpu_seconds,
                       self.run_open_files)  # fmt: skip

    def run_limit_ceilings(self) -> RunLimits:
        return _limits(self.max_run_memory_mb, self.max_run_processes, self.max_run_cpu_seconds,
                       self.max_run_open_files)  # fmt: skip

    def run_slots(self) -> int:
        """maxConcurrentRuns, or its default."""
        cap = self.max_concurrent_runs or RUNS_PER_CORE * (os.cpu_count() or 1)
        if self.run_uid_range and not self.max_concurrent_runs:
            first, last = parse_uid_range(self.run_uid_range)
            cap = min(cap, last - first + 1)
        return cap

    def validate(self) -> None:
        super().validate()
        _positive(
            self,
            "job_log_batch_size",
            "job_log_commit_timeout",
            "job_log_buffer_limit",
            "job_log_buffer_bytes",
            "spill_limit_bytes",
            "kill_grace_period",
            "drain_timeout",
            "start_window",
            "output_limit",
            "live_output_interval",
            "busy_wait",
            "takeover_delay",
        )
        if self.output_limit > MAX_OUTPUT_LIMIT:
            # Decoding replaces bad bytes with 3-byte characters: stay far below MongoDB's 16 MiB.
            raise ConfigError(
                "outputLimit", f"must be at most {MAX_OUTPUT_LIMIT} bytes, got {self.output_limit}"
            )
        if self.live_output_after < 0:
            raise ConfigError("liveOutputAfter", f"must be 0 or positive, got "
                              f"{self.live_output_after}")  # fmt: skip
        if self.worker_lease_ttl < 2:
            raise ConfigError(
                "workerLeaseTtl", f"must be at least 2 s, got {self.worker_lease_ttl}"
            )
        if "/" in self.worker_id:
            raise ConfigError("workerId", "must not contain '/'")
        if self.http_listen:
            parse_listen(self.http_listen)
        parse_networks("httpJobAllow", self.http_job_allow)
        if self.run_uid_range:
            parse_uid_range(self.run_uid_range)
            if self.run_as:
                raise ConfigError("runUidRange", "set runUidRange or runAs, not both")
        if self.max_concurrent_runs < 0:
            raise ConfigError("maxConcurrentRuns", "must be 0 (the default) or positive")
        if self.run_uid_range and self.max_concurrent_runs:
            first, last = parse_uid_range(self.run_uid_range)
            if self.max_concurrent_runs > last - first + 1:
                raise ConfigError(
                    "maxConcurrentRuns",
                    f"{self.max_concurrent_runs} runs at once need as many uids, and "
                    f"runUidRange {self.run_uid_range} holds {last - first + 1}",
                )
        for name in _LIMIT_KEYS:
            value = getattr(self, name)
            if value < 0:
                raise ConfigError(json_key(name), "must be 0 (none) or positive")
            try:
                parse_limits({_LIMIT_KEYS[name]: value or None})
            except InvalidFieldError as exc:
                raise ConfigError(json_key(name), exc.problem) from None
        try:
            parse_labels("labels", self.labels)
        except InvalidFieldError as exc:
            raise ConfigError(exc.field, exc.problem) from None
        if not 1 <= self.weight <= MAX_WEIGHT:
            raise ConfigError("weight", f"must be 1-{MAX_WEIGHT}, got {self.weight}")
        if self.takeover_delay >= self.start_window:
            raise ConfigError("takeoverDelay", "must be shorter than startWindow")


# Each limit's config key -> its name in a job's limits.
_LIMIT_KEYS = {
    f"{prefix}run_{name}": key
    for prefix in ("", "max_")
    for name, key in (("memory_mb", "memoryMB"), ("processes", "processes"),
                      ("cpu_seconds", "cpuSeconds"), ("open_files", "openFiles"))
}  # fmt: skip


def _limits(memory_mb: int, processes: int, cpu_seconds: int, open_files: int) -> RunLimits:
    return RunLimits(memory_mb or None, processes or None, cpu_seconds or None, open_files or None)


ConfigT = TypeVar("ConfigT", bound=StoreConfig)
# maxConcurrentRuns' default: cron jobs mostly wait (on I/O, on others), and a slot is also held
# by a claim on its way, so the default leaves room for a second's burst of 500 ticks on 3 workers.
RUNS_PER_CORE = 256
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAX_UID = 2**31 - 2  # (uid_t)-1 and above mean "no uid" to the kernel
MAX_OUTPUT_LIMIT = 4 * 1024 * 1024
# A TTL index's expiry is at most 2**31 - 1 s; the longest whole number of days below it.
MAX_RETENTION_DAYS = (2**31 - 1) // 86400


def parse_networks(key: str, entries: Sequence[str]) -> tuple[IPNetwork, ...]:
    """Addresses or networks (``127.0.0.1``, ``10.1.0.0/16``, ``::1``), as networks."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ConfigError(key, f"{entry!r} is not an IP address or network (CIDR)") from None
    return tuple(networks)


def parse_uid_range(text: str) -> tuple[int, int]:
    """``runUidRange``: ``LOW-HIGH``, both inclusive."""
    low, sep, high = text.partition("-")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit():
        raise ConfigError("runUidRange", f"must be LOW-HIGH, e.g. 61000-61999, got {text!r}")
    first, last = int(low), int(high)
    if not 1000 <= first <= last <= _MAX_UID:
        raise ConfigError(
            "runUidRange", f"must lie within 1000-{_MAX_UID}, low before high, got {text!r}"
        )
    return first, last


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError("httpListen", f"must be host:port, got {text!r}")
    return host.strip("[]"), int(port)


def json_key(field_name: str) -> str:
    head, *rest = field_name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def env_var(field_name: str) -> str:
    return "GDTS_" + field_name.upper()


def load_config(
    cls: type[ConfigT], path: Path | None, environ: Mapping[str, str] | None = None
) -> ConfigT:
    """Read ``path`` (if given), apply ``GDTS_*`` overrides from ``environ``, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(str(path), f"cannot be read ({exc.strerror})") from None
        except ValueError as exc:
            raise ConfigError(str(path), f"is not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise ConfigError(str(path), "must hold a JSON object")
    hints = typing.get_type_hints(cls)
    by_key = {json_key(f.name): f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in by_key:
            raise ConfigError(key, f"unknown key (known keys: {', '.join(sorted(by_key))})")
        name = by_key[key].name
        values[name] = _coerce_json(key, value, hints[name])
    for name in (f.name for f in fields(cls)):
        text = (environ or {}).get(env_var(name))
        if text is not None:
            values[name] = _coerce_env(env_var(name), text, hints[name])
    config = cls(**values)
    config.validate()
    return config


def _coerce_json(key: str, value: Any, hint: Any) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, got {json.dumps(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be an integer, got {json.dumps(value)}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {json.dumps(value)}")
        return value
    if _is_str_tuple(hint):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, f"must be a list of strings, got {json.dumps(value)}")
        return tuple(value)
    if _is_str_dict(hint):
        if not isinstance(value, dict):
            raise ConfigError(key, f"must be an object of key: value, got {json.dumps(value)}")
        return dict(value)  # its keys and values are checked by validate()
    if _is_dict_tuple(hint):
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ConfigError(key, "must be a list of objects")  # not repeated: may be a key
        return tuple(value)  # each object is checked by validate()
    raise AssertionError(f"unhandled config type {hint!r}")


def _coerce_env(var: str, text: str, hint: Any) -> Any:
    if hint is bool:
        lowered = text.strip().lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(var, f"must be true or false, got {text!r}")
        return lowered in ("true", "1", "yes")
    if hint is int:
        if not re.fullmatch(r"-?\d+", text.strip()):
            raise ConfigError(var, f"must be an integer, got {text!r}")
        return int(text)
    if _is_str_tuple(hint):
        return tuple(part.strip() for part in text.split(",") if part.strip())
    if _is_str_dict(hint):  # key=value,key=value
        pairs = [part.partition("=") for part in text.split(",") if part.strip()]
        if not all(sep for _, sep, _ in pairs):
            raise ConfigError(var, f"must be key=value,key=value, got {text!r}")
        return {key.strip(): value.strip() for key, _, value in pairs}
    if _is_dict_tuple(hint):  # the JSON the file would hold
        try:
            value = json.loads(text)
        except ValueError:
            raise ConfigError(var, "must be a JSON list of objects") from None
        return _coerce_json(var, value, hint)
    return text


def _is_str_tuple(hint: Any) -> bool:
    return typing.get_origin(hint) is tuple and typing.get_args(hint)[0] is str


def _is_dict_tuple(hint: Any) -> bool:
    return typing.get_origin(hint) is tuple and typing.get_origin(typing.get_args(hint)[0]) is dict


def _is_str_dict(hint: Any) -> bool:
    return typing.get_origin(hint) is dict and typing.get_args(hint) == (str, str)


def _positive(config: object, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if value <= 0:
            raise ConfigError(json_key(name), f"must be positive, got {value}")


__all__ = ["ManagerConfig", "WorkerConfig", "StoreConfig", "load_config", "json_key", "env_var"]
