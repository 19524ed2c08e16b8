"""The deployment files in server-deployment-conf/, checked by the programs that load them:
``systemd-analyze verify`` on both units (as shipped, byte for byte), ``nginx -t`` on the proxy
config, and a real nginx in front of two real managers: requests spread over both, survive one
manager dying or losing etcd, carry the client's address to the audit trail, stop at 1 MiB, and
get a Secure session cookie over HTTPS.

What had to change on this machine is replaced and nothing else: for systemd, the units run in
a scratch root (``--root``) that holds the entry point; for nginx, the certificate paths, and for
the live nginx also the listen ports (127.0.0.1, free ports, no IPv6) and the managers'
addresses."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from gdts.config import WorkerConfig
from gdts.localstack import free_port, pdeathsig_preexec
from tests.certs import CertFiles, make_certs
from tests.support import (
    ADMIN_PASSWORD,
    ADMIN_TOKEN,
    ADMIN_USER,
    REPO_ROOT,
    Child,
    Cluster,
    TcpProxy,
    api_call,
    holds,
    wait_until,
)

CONF_DIR = REPO_ROOT / "server-deployment-conf"
UNITS = {"manager": CONF_DIR / "gdts-manager.service", "worker": CONF_DIR / "gdts-worker.service"}
NGINX_SITE = CONF_DIR / "nginx-gdts.conf"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
# The distribution's units (targets and the like) that ours are ordered against; --root looks
# for them inside the scratch root.
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
# The client address a test claims in its own X-Forwarded-For (TEST-NET-3).
SPOOFED = "203.0.113.9"


@pytest.fixture
def _systemd_analyze_installed() -> None:
    # A failure, not a skip: `make test` installs it, and a skip would hide an unchecked unit.
    if SYSTEMD_ANALYZE is None:
        pytest.fail("systemd-analyze is not installed (make test-tools installs it)")


@pytest.fixture
def _nginx_installed() -> None:
    if NGINX is None:
        pytest.fail("nginx is not installed (make test-tools installs it)")


needs_systemd_analyze = pytest.mark.usefixtures("_systemd_analyze_installed")
needs_nginx = pytest.mark.usefixtures("_nginx_installed")


# -- systemd ----------------------------------------------------------------------------------


def unit_settings(path: Path) -> dict[str, list[str]]:
    """``"Section.Key"`` -> every value the unit gives it, in order."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings


def setting(settings: dict[str, list[str]], key: str) -> str:
    """The value that counts: the last one given."""
    assert key in settings, f"{key} is not set"
    return settings[key][-1]


def exec_start(unit: Path) -> list[str]:
    # Prefixes such as "-" or "!" would change what systemd runs; ours have none.
    return setting(unit_settings(unit), "Service.ExecStart").split()


def systemd_root(base: Path, units: dict[str, bytes]) -> Path:
    """A scratch root for ``systemd-analyze --root``: the distribution's units, ``units`` (file
    name -> exact content) in /etc/systemd/system, and a stand-in for each unit's ExecStart
    binary, which systemd only checks is there and executable."""
    root = base / "root"
    shutil.copytree(SYSTEM_UNITS, root / SYSTEM_UNITS.relative_to("/"), symlinks=True)
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    for name, content in units.items():
        (unit_dir / name).write_bytes(content)
        binary = root / exec_start(unit_dir / name)[0].lstrip("/")
        binary.parent.mkdir(parents=True, exist_ok=True)
        binary.write_text("#!/bin/sh\nexit 0\n")
        binary.chmod(0o755)
    return root


def systemd_analyze(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, f"--root={root}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def lines_about(output: str, names: list[str]) -> list[str]:
    return [line for line in output.splitlines() if any(name in line for name in names)]


@needs_systemd_analyze
def test_both_units_pass_systemd_analyze_verify_unchanged(tmp_path: Path) -> None:
    shipped = {path.name: path.read_bytes() for path in UNITS.values()}
    root = systemd_root(tmp_path, shipped)
    for name, content in shipped.items():  # what systemd reads is what we ship
        assert (root / "etc/systemd/system" / name).read_bytes() == content
    result = systemd_analyze(root, "verify", "--recursive-errors=no", *shipped)
    output = result.stdout + result.stderr
    # systemd-analyze exits 0 after most warnings ("Unknown key", "Failed to parse"): any line
    # that names one of our units is a failure.
    assert lines_about(output, list(shipped)) == [], output
    assert result.returncode == 0, output


@needs_systemd_analyze
def test_verify_reports_a_setting_systemd_would_ignore(tmp_path: Path) -> None:
    """The check above can fail: a misspelt value and an unknown key are reported."""
    broken = UNITS["worker"].read_text().replace("KillMode=mixed", "KillMode=mixd")
    broken = broken.replace("[Install]", "[Install]\nWantedByy=multi-user.target")
    root = systemd_root(tmp_path, {"gdts-broken.service": broken.encode()})
    result = systemd_analyze(root, "verify", "--recursive-errors=no", "gdts-broken.service")
    complaints = lines_about(result.stdout + result.stderr, ["gdts-broken.service"])
    assert any("mixd" in line for line in complaints), complaints
    assert any("WantedByy" in line for line in complaints), complaints


@needs_systemd_analyze
def test_the_manager_unit_scores_as_well_sandboxed(tmp_path: Path) -> None:
    root = systemd_root(tmp_path, {UNITS["manager"].name: UNITS["manager"].read_bytes()})
    name = UNITS["manager"].name
    result = systemd_analyze(root, "security", "--offline=yes", "--no-pager", name)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Exposure from 0.0 (locked down) to 10.0 (nothing restricted): the manager scores 1.7 on
    # systemd 252. The worker scores 7.7 on purpose: its jobs need the machine.
    score = re.search(rf"Overall exposure level for {name}: (\d+\.\d)", output)
    assert score is not None, output
    assert float(score[1]) <= 3.0, output


@pytest.mark.parametrize("kind", ["manager", "worker"])
def test_units_start_the_installed_entry_point_with_the_etc_config(
    kind: str, tmp_path: Path
) -> None:
    unit = UNITS[kind]
    settings = unit_settings(unit)
    binary, *args = exec_start(unit)
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    # pip install /opt/gdts puts pyproject's [project.scripts] entry points in the venv's bin/.
    assert Path(binary).parent == Path("/opt/gdts/.venv/bin")
    assert Path(binary).name in scripts
    assert args == [kind, "-c", f"/etc/gdts/{kind}.json"]
    assert setting(settings, "Service.User") == "gdts"
    assert setting(settings, "Service.EnvironmentFile") == f"-/etc/gdts/{kind}.env"
    assert setting(settings, "Service.Restart") == "on-failure"
    # The real command line with these arguments, its config swapped for a missing file: it
    # is understood, and fails as a configuration error - the exit code the unit does not
    # restart on.
    missing = tmp_path / f"{kind}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GDTS_")}
    result = subprocess.run(
        [sys.executable, "-m", "gdts", *args[:-1], str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert f"{missing}: cannot be read" in result.stderr, result.stderr
    assert str(result.returncode) == setting(settings, "Service.RestartPreventExitStatus")


def test_the_worker_unit_leaves_the_drain_and_the_kills_to_the_worker() -> None:
    settings = unit_settings(UNITS["worker"])
    # SIGTERM to the worker alone; SIGKILL for whatever is left at the end.
    assert setting(settings, "Service.KillMode") == "mixed"
    assert setting(settings, "Service.KillSignal") == "SIGTERM"
    # The worker's longest stop with the default config (gdts/worker/worker.py): the drain, the
    # kill grace period plus the 5 s it waits for killed jobs to end, the flush of results, and
    # revoking the lease (5 s).
    defaults = WorkerConfig()
    longest_stop_s = (
        defaults.drain_timeout / 1000
        + defaults.kill_grace_period / 1000
        + 5
        + max(5.0, defaults.mongodb_connect_timeout / 1000)
        + 5
    )
    timeout = setting(settings, "Service.TimeoutStopSec")
    assert timeout.isdigit() and int(timeout) >= longest_stop_s + 20, (timeout, longest_stop_s)
    # Jobs must be able to write outside the state directory.
    assert setting(settings, "Service.ProtectSystem") != "strict"
    # One job running out of memory must not stop the worker.
    assert setting(settings, "Service.OOMPolicy") == "continue"


# -- nginx ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteChanges:
    """What a test replaces in nginx-gdts.conf; None: keep the shipped line."""

    cert: Path
    key: Path
    http_port: int | None = None
    https_port: int | None = None
    managers: tuple[str, ...] | None = None  # host:port, one per upstream server line


def localized_site(changes: SiteChanges) -> str:
    """nginx-gdts.conf with only the lines ``changes`` names replaced; every other byte stays."""
    out: list[str] = []
    managers = iter(changes.managers or ())
    replaced = {"certificate": 0, "upstream": 0, "listen": 0}
    for line in NGINX_SITE.read_text().splitlines(keepends=True):
        words = line.strip().removesuffix(";").split()
        if words[:1] == ["ssl_certificate"]:
            line = line.replace(words[1], str(changes.cert))
            replaced["certificate"] += 1
        elif words[:1] == ["ssl_certificate_key"]:
            line = line.replace(words[1], str(changes.key))
            replaced["certificate"] += 1
        elif changes.managers is not None and re.fullmatch(r"server \S+:\d+", " ".join(words[:2])):
            line = line.replace(words[1], next(managers))
            replaced["upstream"] += 1
        elif changes.http_port is not None and words[:1] == ["listen"]:
            replaced["listen"] += 1
            if words[1].startswith("[::]"):
                continue  # the test listens on 127.0.0.1 only
            port = changes.http_port if words[1] == "80" else changes.https_port
            assert words[1] in ("80", "443") and port is not None, line
            line = line.replace(f"listen {words[1]}", f"listen 127.0.0.1:{port}")
        out.append(line)
    assert replaced["certificate"] == 2, replaced
    if changes.managers is not None:
        assert replaced["upstream"] == len(changes.managers), replaced
    if changes.http_port is not None:
        assert replaced["listen"] == 4, replaced
    return "".join(out)


def write_nginx_conf(prefix: Path, site: str) -> Path:
    """A minimal nginx.conf that includes ``site`` inside http {}, as a distribution's does,
    with every file nginx writes under ``prefix``."""
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "gdts.conf").write_text(site)
    # As root, nginx's workers would run as nobody, who cannot enter the test's 0700
    # directories to buffer a request body over 16 KiB on disk.
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"{user}"
        "worker_processes 1;\n"
        f"pid {prefix / 'nginx.pid'};\n"
        "error_log stderr notice;\n"
        "events { worker_connections 128; }\n"
        "http {\n"
        "    log_format upstreams '$status\\t$upstream_addr\\t$http_x_test_phase\\t$request';\n"
        f"    access_log {prefix / 'access.log'} upstreams;\n"
        f"{temp}\n"
        f"    include {prefix / 'gdts.conf'};\n"
        "}\n"
    )
    return conf


def nginx_command(prefix: Path, conf: Path, *args: str) -> list[str]:
    assert NGINX is not None
    # -e: the error log before nginx.conf is read is stderr, not a root-owned /var/log path.
    return [NGINX, "-p", f"{prefix}/", "-c", str(conf), "-e", "stderr", *args]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_certs(tmp_path_factory.mktemp("certs"))


@needs_nginx
def test_the_nginx_site_passes_nginx_t(tmp_path: Path, certs: CertFiles) -> None:
    site = localized_site(SiteChanges(cert=certs.server_cert, key=certs.server_key))
    conf = write_nginx_conf(tmp_path / "nginx", site)
    result = subprocess.run(
        nginx_command(tmp_path / "nginx", conf, "-t"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "test is successful" in output, output
    # A deprecated or ignored directive is a warning, and nginx -t still succeeds.
    assert not re.search(r"\[(warn|emerg|alert|crit|error)\]", output), output


@dataclass
class Manager:
    name: str
    url: str
    process: Child

    @property
    def address(self) -> str:
        return self.url.removeprefix("http://")


@dataclass
class Reply:
    status: int
    body: Any  # the JSON answer, or the text of anything else
    headers: Any


@dataclass
class Fleet:
    """Two managers behind a running nginx."""

    https: str
    http: str
    managers: list[Manager]
    tls: ssl.SSLContext
    access_log: Path
    etcd_link: TcpProxy  # the second manager's way to etcd

    async def call(
        self,
        method: str,
        path: str,
        *,
        source: str = "127.0.0.1",
        base: str | None = None,
        token: str | None = ADMIN_TOKEN,
        phase: str = "",
        **kwargs: Any,
    ) -> Reply:
        """One request through nginx (HTTPS), from the loopback address ``source``; ``phase``
        marks it in nginx's access log."""
        headers = dict(kwargs.pop("headers", {}))
        if phase:
            headers["X-Test-Phase"] = phase
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        connector = aiohttp.TCPConnector(ssl=self.tls, local_addr=(source, 0))
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.request(
                method, (base or self.https) + path, headers=headers, **kwargs
            ) as response:
                if response.content_type == "application/json":
                    body = await response.json()
                else:
                    body = await response.text()
                return Reply(response.status, body, response.headers)

    def served(self) -> list[list[str]]:
        """[status, upstream addresses tried, phase, request line] for each request logged."""
        if not self.access_log.exists():
            return []
        return [line.split("\t") for line in self.access_log.read_text().splitlines()]


async def start_manager(cluster: Cluster, name: str, **overrides: Any) -> Manager:
    """Like cluster.start_manager, under a name of its own: two managers in one test must not
    share a config file and a log."""
    port = free_port()
    config = cluster.stack.manager_config(port, **overrides)
    process = await cluster.spawn("manager", name, config)
    url = f"http://127.0.0.1:{port}"

    async def answers() -> bool:
        if process.process.returncode is not None:
            raise AssertionError(f"{name} exited:\n{process.log_text()}")
        try:
            status, _ = await api_call(url, "GET", "/job/list")
        except aiohttp.ClientConnectionError:
            return False
        return status == 200

    await wait_until(answers, 30, f"{name} to answer")
    return Manager(name, url, process)


@contextlib.asynccontextmanager
async def running_nginx(prefix: Path, site: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """nginx in the foreground as our child; stopped (SIGTERM: its fast shutdown) at the end."""
    conf = write_nginx_conf(prefix, site)
    with (prefix / "nginx.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *nginx_command(prefix, conf, "-g", "daemon off;"),
            stdout=log,
            stderr=log,
            preexec_fn=pdeathsig_preexec(),
        )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


@pytest_asyncio.fixture
async def fleet(
    cluster: Cluster, certs: CertFiles, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Fleet]:
    # nginx connects to the managers from 127.0.0.1: that is the proxy they trust.
    proxy_config = {"trustedProxies": ["127.0.0.1"]}
    etcd_host, etcd_port = cluster.stack.etcd_endpoint.rsplit(":", 1)
    etcd_link = TcpProxy(etcd_host, int(etcd_port))
    await etcd_link.start()
    try:
        managers = [
            await start_manager(cluster, "manager-a", **proxy_config),
            await start_manager(
                cluster, "manager-b", etcdEndpoints=[etcd_link.endpoint], **proxy_config
            ),
        ]
        changes = SiteChanges(
            cert=certs.server_cert,
            key=certs.server_key,
            http_port=free_port(),
            https_port=free_port(),
            managers=tuple(m.address for m in managers),
        )
        prefix = tmp_path / "nginx"
        async with running_nginx(prefix, localized_site(changes)) as nginx:
            fleet = Fleet(
                https=f"https://127.0.0.1:{changes.https_port}",
                http=f"http://127.0.0.1:{changes.http_port}",
                managers=managers,
                tls=ssl.create_default_context(cafile=str(certs.ca)),
                access_log=prefix / "access.log",
                etcd_link=etcd_link,
            )

            async def nginx_answers() -> bool:
                if nginx.returncode is not None:
                    log = (prefix / "nginx.log").read_text(errors="replace")
                    raise AssertionError(f"nginx exited:\n{log}")
                try:
                    return (await fleet.call("GET", "/health/alive")).status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await wait_until(nginx_answers, 15, "nginx to answer")
            yield fleet
            report = getattr(request.node, "rep_call", None)
            if report is not None and report.failed:
                print("===== nginx\n" + (prefix / "nginx.log").read_text(errors="replace")[-4000:])
                print("===== nginx access log\n" + "\n".join(map(str, fleet.served()))[-4000:])
    finally:
        await etcd_link.close()


def save_form(name: str) -> dict[str, str]:
    return {"job": f'{{"name": "{name}", "command": "true", "cronExpr": "0 0 1 1 *"}}'}


async def ok(fleet: Fleet, method: str, path: str, **kwargs: Any) -> Any:
    reply = await fleet.call(method, path, **kwargs)
    assert reply.status == 200 and reply.body["errno"] == 0, (reply.status, reply.body)
    return reply.body["data"]


def form_body(size: int) -> io.BytesIO:
    """A form of exactly ``size`` bytes whose job field is not a job."""
    return io.BytesIO(b"job=" + b"x" * (size - 4))


def cookie_flags(reply: Reply) -> set[str]:
    (cookie,) = reply.headers.getall("Set-Cookie")
    assert cookie.startswith("gdts_session="), cookie
    return {part.strip().lower() for part in cookie.split(";")[1:]}


async def upstreams(fleet: Fleet, phase: str, count: int) -> list[str]:
    """The manager address(es) nginx tried for each of the ``count`` requests of ``phase``, in
    order, e.g. "127.0.0.1:8071, 127.0.0.1:8070" for a request passed on to a second manager."""

    def tried() -> list[str]:
        return [upstream for _, upstream, mark, _ in fleet.served() if mark == phase]

    # nginx logs a request once its answer is sent: the client may look a moment earlier.
    await wait_until(holds(lambda: len(tried()) >= count), 5, f"nginx to log {phase}")
    return tried()


@needs_nginx
@pytest.mark.asyncio
async def test_nginx_spreads_requests_over_both_managers_and_survives_one_dying(
    fleet: Fleet,
) -> None:
    a, b = fleet.managers
    ready = await fleet.call("GET", "/health/ready")
    assert ready.status == 200, ready.body
    for i in range(4):
        await ok(fleet, "GET", "/job/list", phase="both")
        await ok(fleet, "POST", "/job/save", data=save_form(f"spread-{i}"), phase="both")
    assert set(await upstreams(fleet, "both", 8)) == {a.address, b.address}

    await b.process.kill()
    for i in range(4):
        await ok(fleet, "GET", "/job/list", phase="one")
        # A POST is passed on too: a refused connection means the first manager never got it.
        await ok(fleet, "POST", "/job/save", data=save_form(f"after-{i}"), phase="one")
    assert (await fleet.call("GET", "/health/ready")).status == 200
    tried = await upstreams(fleet, "one", 8)
    # nginx tried the dead manager, went on to the live one, and then stopped trying it.
    assert f"{b.address}, {a.address}" in tried, tried
    assert tried[-1] == a.address, tried
    names = {job["name"] for job in await ok(fleet, "GET", "/job/list")}
    assert {f"spread-{i}" for i in range(4)} | {f"after-{i}" for i in range(4)} <= names


@needs_nginx
@pytest.mark.asyncio
async def test_nginx_routes_around_a_manager_cut_off_from_etcd(fleet: Fleet) -> None:
    a, b = fleet.managers
    fleet.etcd_link.cut()

    async def b_says_unavailable() -> bool:
        status, _ = await api_call(b.url, "GET", "/job/list")
        return status == 503

    await wait_until(b_says_unavailable, 20, "manager-b to answer 503 without etcd")
    for _ in range(4):
        await ok(fleet, "GET", "/job/list", phase="cut")
    tried = await upstreams(fleet, "cut", 4)
    # Manager b's 503 made nginx ask manager a, which answered.
    assert f"{b.address}, {a.address}" in tried, tried
    assert all(t.endswith(a.address) for t in tried), tried


@needs_nginx
@pytest.mark.asyncio
async def test_the_audit_trail_names_the_address_nginx_saw(fleet: Fleet) -> None:
    """nginx appends the address it saw to X-Forwarded-For ($proxy_add_x_forwarded_for); the
    manager, trusting 127.0.0.1, reads the list from the right and takes the first address
    that is not a trusted proxy."""
    spoof = {"X-Forwarded-For": SPOOFED}
    # From 127.0.0.2: nginx sends "203.0.113.9, 127.0.0.2". The client's claim is ignored.
    await ok(fleet, "POST", "/job/save", data=save_form("from-2"), source="127.0.0.2")
    await ok(
        fleet, "POST", "/job/save", data=save_form("spoof-2"), source="127.0.0.2", headers=spoof
    )
    # From 127.0.0.1 with no header of its own: nginx sends "127.0.0.1", all trusted hops, so
    # the manager names the first one.
    await ok(fleet, "POST", "/job/save", data=save_form("from-1"))
    # From 127.0.0.1 with a claim: "203.0.113.9, 127.0.0.1". The client's real address is the
    # trusted proxy's, so the manager skips it as a proxy hop and believes the claim. A client
    # on an address listed in trustedProxies (e.g. a script on the nginx host) can name any
    # source; everyone else cannot.
    await ok(fleet, "POST", "/job/save", data=save_form("spoof-1"), headers=spoof)
    sources = {}
    for job in ("from-2", "spoof-2", "from-1", "spoof-1"):
        (entry,) = await ok(fleet, "GET", "/audit", params={"action": "job.save", "job": job})
        sources[job] = entry["source"]
    assert sources == {
        "from-2": "127.0.0.2",
        "spoof-2": "127.0.0.2",
        "from-1": "127.0.0.1",
        "spoof-1": SPOOFED,
    }


@needs_nginx
@pytest.mark.asyncio
async def test_nginx_limits_bodies_like_the_manager_redirects_http_and_secures_the_cookie(
    fleet: Fleet,
) -> None:
    a = fleet.managers[0]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    one_mib = 1024 * 1024
    # Exactly 1 MiB passes nginx and the manager's own limit, and is refused as a bad job;
    # a byte more never reaches a manager.
    at_limit = await fleet.call("POST", "/job/save", data=form_body(one_mib), headers=form)
    assert at_limit.status == 400 and at_limit.body["field"] == "job", at_limit.body
    over = await fleet.call("POST", "/job/save", data=form_body(one_mib + 1), headers=form)
    assert over.status == 413 and "nginx" in over.body, over.body
    assert over.headers["Content-Type"].startswith("text/html")

    plain = await fleet.call("GET", "/job/list", base=fleet.http, allow_redirects=False)
    assert plain.status == 301
    assert plain.headers["Location"] == "https://127.0.0.1/job/list"

    # The manager behind nginx speaks plain HTTP and does not mark its session cookie Secure;
    # nginx does.
    login = {"username": ADMIN_USER, "password": ADMIN_PASSWORD}
    direct = await fleet.call("POST", "/auth/login", base=a.url, data=login, token=None)
    assert direct.status == 200, direct.body
    assert "secure" not in cookie_flags(direct)
    reply = await fleet.call("POST", "/auth/login", data=login, token=None)
    assert reply.status == 200, reply.body
    assert {"secure", "httponly", "samesite=strict"} <= cookie_flags(reply)
    assert reply.headers["Strict-Transport-Security"] == "max-age=31536000"
    # The manager's own security headers pass through.
    assert reply.headers["X-Frame-Options"] == "DENY"
