"""``python -m bench.run``: benchmark GDTS end to end and print a report.

Default mode (throughput): start etcd, mongod, one manager and N workers; save --jobs jobs
through the API, each appending one line to a records file whenever it runs; measure for
--duration seconds after --warmup; then a kill-latency phase. --jobs-at-rest N instead stores N
yearly jobs and measures one fresh worker loading and idling over them; --log-runs N gives one
job N runs and times GET /job/log.

Every headline figure comes from side effects (the records file, /proc, etcd's /metrics), never
from GDTS's own logs or counters. Nothing is written into the repository: the stack lives in a
temporary directory that is removed at the end, and the results are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import report
from bench.api import ManagerClient, wait_http_ok
from bench.atrest import AtRestParams, run_at_rest
from bench.calibrate import spawn_baseline
from bench.joblog import LogParams, run_job_log
from bench.kills import run_kills
from bench.measure import Processes
from bench.stack import ETCD_PREFIX, IDENTITIES, MONGO_DB, Stack, summarize_log
from bench.throughput import ThroughputParams, run_throughput
from gdts.cron import CronError, parse_cron

_READY_TIMEOUT_S = 60.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--jobs", type=int, default=500, help="jobs in the throughput phase")
    parser.add_argument("--workers", type=int, default=3, help="workers to start (b1..bN)")
    parser.add_argument(
        "--cron", default="* * * * * *", help="cron of every job (default: every second)"
    )
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before measuring")
    parser.add_argument("--kills", type=int, default=20, help="kill-latency samples (0: skip)")
    parser.add_argument(
        "--concurrency", type=int, default=50, help="API requests in flight when saving/deleting"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=3.0,
        help="after the deletes, wait until no run has started for this long (max 180 s)",
    )
    parser.add_argument(
        "--jobs-at-rest",
        type=int,
        nargs="?",
        const=100_000,
        default=None,
        metavar="N",
        help="instead: store N yearly jobs (default 100000), time one fresh worker loading them",
    )
    parser.add_argument("--idle", type=float, default=30.0, help="at-rest idle seconds")
    parser.add_argument(
        "--store-directly",
        action="store_true",
        help="at rest: write the jobs straight into etcd (as a manager would), not via the API",
    )
    parser.add_argument(
        "--distinct-schedules",
        action="store_true",
        help="at rest: a random day and month per job too (about 480,000 expressions a million)",
    )
    parser.add_argument(
        "--log-runs",
        type=int,
        nargs="?",
        const=1_000_000,
        default=None,
        metavar="N",
        help="instead: one job with N runs (default 1000000) in MongoDB; time GET /job/log",
    )
    parser.add_argument(
        "--target",
        metavar="URL",
        help="use this running manager (http://host:port) instead of starting a stack; its "
        "workers must be able to append to the records file under --tmp-dir (same machine)",
    )
    parser.add_argument(
        "--etcd-url", metavar="URL", help="with --target: http://host:port of etcd, for /metrics"
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="GDTS processes' logLevel (INFO costs CPU: for diagnosis, with --keep)",
    )
    parser.add_argument(
        "--etcd-prefix", default="/gdts/", help="with --target: the cluster's etcdPrefix"
    )
    parser.add_argument("--tmp-dir", default=None, help="where the temporary directory goes")
    parser.add_argument(
        "--token",
        default=os.environ.get("GDTS_ADMIN_TOKEN", ""),
        help="with --target: an admin API token (default: $GDTS_ADMIN_TOKEN)",
    )
    parser.add_argument(
        "--identity",
        choices=IDENTITIES,
        default="root",
        help="who jobs run as: root (allowRoot), user (runAs nobody, one user for every run) "
        "or uids (runUidRange, a uid per run)",
    )
    parser.add_argument(
        "--auth",
        action="store_true",
        help="etcd and mongod with authentication, as make run starts them (with --identity "
        "uids: make run's own set-up as root)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (logs, records)"
    )
    args = parser.parse_args(argv)
    try:
        parse_cron(args.cron)
    except CronError as exc:
        parser.error(str(exc))
    if args.log_runs is not None and (args.target is not None or args.log_runs < 20):
        parser.error("--log-runs needs a stack of its own (no --target) and N >= 20")
    if args.jobs < 1 or args.workers < 1 or args.duration <= 2 or args.concurrency < 1:
        parser.error("--jobs, --workers and --concurrency must be positive, --duration > 2")
    return args


async def _start_workers(
    stack: Stack, session: aiohttp.ClientSession, count: int, api: ManagerClient
) -> None:
    for i in range(1, count + 1):
        await stack.start_worker(f"b{i}")
    await asyncio.gather(
        *(wait_http_ok(session, f"{w.url}/health/ready", _READY_TIMEOUT_S) for w in stack.workers)
    )
    listed = await api.list_workers()
    if len(listed) != count:
        raise RuntimeError(f"expected {count} workers in /worker/list, got {listed}")


def _check_alive(stack: Stack | None) -> None:
    if stack is not None and (crashed := stack.crashed()):
        raise RuntimeError(f"GDTS process exited during the run: {', '.join(crashed)}")


async def _run(
    args: argparse.Namespace, workdir: Path, stack: Stack | None, payload: dict[str, Any]
) -> None:
    """Fills ``payload`` as it goes, so an interrupted run still reports what it has."""
    connector = aiohttp.TCPConnector(limit=args.concurrency + 10)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if stack is not None:
            print(f"-- starting etcd, mongod and the manager under {workdir}", flush=True)
            await stack.start_stores()
            await stack.start_manager()
            base_url, etcd_url, token = stack.manager_url, stack.etcd_url, stack.admin_token
            # Asked for when used: etcd's tokens expire after five minutes.
            etcd_headers = functools.partial(stack.etcd_gateway_headers, session)
        else:
            base_url, etcd_url, token = args.target, args.etcd_url, args.token
            etcd_headers = None
        api = ManagerClient(session, base_url, token)
        await api.wait_ready(_READY_TIMEOUT_S)
        payload["environment"] = await report.environment(session, etcd_url)
        prefix = f"bench-{secrets.token_hex(3)}"

        if args.log_runs is not None:
            assert stack is not None and stack.mongo is not None
            log_params = LogParams(args.log_runs, prefix)
            payload["job_log"] = await run_job_log(
                session, base_url, api.headers, stack.mongo_uri, MONGO_DB, log_params
            )
            return
        if args.jobs_at_rest is not None:
            params = AtRestParams(
                args.jobs_at_rest,
                args.concurrency,
                args.idle,
                prefix,
                direct=args.store_directly,
                distinct_schedules=args.distinct_schedules,
            )
            payload["at_rest"] = await run_at_rest(api, session, params, workdir, stack)
            return

        procs = Processes()
        worker_urls: list[str] = []
        if stack is not None:
            print(f"-- starting {args.workers} workers", flush=True)
            await _start_workers(stack, session, args.workers, api)
            assert stack.manager is not None and stack.etcd is not None
            assert stack.mongo is not None and stack.etcd.pid and stack.mongo.pid
            procs = Processes(
                manager={"manager": stack.manager.pid},
                workers={w.name: w.pid for w in stack.workers},
                stores={"etcd": stack.etcd.pid, "mongod": stack.mongo.pid},
            )
            worker_urls = [f"{w.url}/metrics" for w in stack.workers if w.url]
        payload["workers_listed"] = len(await api.list_workers())
        payload["calibration"] = await spawn_baseline(workdir)
        tparams = ThroughputParams(
            jobs=args.jobs,
            cron=args.cron,
            duration_s=args.duration,
            warmup_s=args.warmup,
            concurrency=args.concurrency,
            settle_s=args.settle,
            name_prefix=prefix,
        )
        payload["throughput"] = await run_throughput(
            api,
            session,
            tparams,
            workdir,
            procs,
            etcd_metrics_url=f"{etcd_url}/metrics" if etcd_url else None,
            worker_metrics_urls=worker_urls,
            worker_ready_urls=[f"{w.url}/health/ready" for w in stack.workers] if stack else [],
            etcd_url=etcd_url,
            etcd_headers=etcd_headers,
            etcd_prefix=ETCD_PREFIX if stack else args.etcd_prefix,
            check_alive=lambda: _check_alive(stack),
        )
        _check_alive(stack)
        if args.kills > 0:
            payload["kills"] = await run_kills(api, workdir, args.kills, prefix)


def _print(payload: dict[str, Any], args: argparse.Namespace) -> None:
    env = payload.get("environment", {})
    if "job_log" in payload:
        report.print_header("job log", env, payload["params"])
        report.print_job_log(payload["job_log"])
    if "at_rest" in payload:
        report.print_header("jobs at rest", env, payload["params"])
        report.print_at_rest(payload["at_rest"])
    if "throughput" in payload:
        report.print_header("throughput", env, payload["params"])
        report.print_throughput(payload["throughput"])
    if "calibration" in payload:
        report.print_calibration(payload["calibration"])
    if "kills" in payload:
        report.print_kills(payload["kills"])
    if payload.get("logs"):
        report.print_logs(payload["logs"])
    if "stop_seconds" in payload:
        print(f"\nStopping the stack took {payload['stop_seconds']:.1f} s.")
    print(f"Total wall time: {payload['wall_seconds']:.1f} s.")
    if payload.get("error"):
        print(f"\n!! the run did not complete: {payload['error']}")
    report.print_json(payload)


async def main_async(args: argparse.Namespace) -> int:
    # SIGTERM like Ctrl-C: cancel the run, so the finally blocks stop everything we started.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)

    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="gdts-bench-", dir=args.tmp_dir))
    if args.identity != "root":
        os.chmod(workdir, 0o711)  # the jobs' own uids append to the records file in it
    stack = (
        Stack(workdir, log_level=args.log_level, identity=args.identity, auth=args.auth)
        if args.target is None
        else None
    )
    # Never the token: the report is meant to be pasted into issues.
    params = {k: v for k, v in vars(args).items() if k not in ("keep", "tmp_dir", "token")}
    if args.jobs_at_rest is not None or args.log_runs is not None:
        for irrelevant in ("jobs", "workers", "cron", "duration", "warmup", "kills", "settle"):
            params.pop(irrelevant)
    if args.target is not None:
        params.pop("workers", None)
        params.pop("log_level")
    else:
        params.pop("target")
        params.pop("etcd_url")
        params.pop("etcd_prefix")
    mode = "throughput"
    if args.jobs_at_rest is not None:
        mode = "at_rest"
    elif args.log_runs is not None:
        mode = "job_log"
    payload: dict[str, Any] = {"mode": mode}
    payload["params"] = params
    status = 0
    try:
        await _run(args, workdir, stack, payload)
    except Exception as exc:  # report what we have, then fail
        payload["error"] = f"{type(exc).__name__}: {exc}"
        status = 1
    except asyncio.CancelledError:  # Ctrl-C or SIGTERM: clean up, report what we have
        payload["error"] = "interrupted"
        status = 130
    finally:
        if stack is not None:
            print("-- stopping the stack", flush=True)
            stopping = time.perf_counter()
            with contextlib.suppress(Exception):
                await stack.stop()
            payload["stop_seconds"] = time.perf_counter() - stopping
            children = [c for c in [stack.manager, *stack.workers] if c is not None]
            payload["logs"] = {c.name: summarize_log(c.log_path) for c in children}
        if args.keep:
            print(f"-- kept {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    payload["wall_seconds"] = time.perf_counter() - started
    _print(payload, args)
    return status


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
