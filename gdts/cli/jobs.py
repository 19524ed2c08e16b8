"""The ``gdts job ...`` and ``gdts worker ls`` commands: each one or a few API calls, printed
for a terminal (or as JSON for a script)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gdts.cli.apply import normalized_jobs, read_file, save_one
from gdts.cli.client import Client
from gdts.cli.config import CliError
from gdts.cli.manifest import dump_jobs, parse_jobs
from gdts.cli.plan import save_order
from gdts.cli.runs import follow_log, print_run, require_job, wait_for_run
from gdts.cli.show import job_rows, run_exit_code, run_outcome, table, worker_rows


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


async def job_ls(client: Client, args: argparse.Namespace) -> int:
    filters = {"name": args.name, "tag": args.tag, "owner": args.owner, "status": args.status}
    jobs = await client.get("/job/list", **filters)
    if args.json:
        print_json(jobs)
    elif jobs:
        print(table(*job_rows(jobs)))
    return 0


async def job_get(client: Client, args: argparse.Namespace) -> int:
    job = require_job(await client.get("/job/list", name=args.name), args.name)
    if args.output == "yaml":
        sys.stdout.write(dump_jobs(await normalized_jobs(client, [job])))
    else:
        print_json(job)
    return 0


async def job_save(client: Client, args: argparse.Namespace) -> int:
    text, source = read_file(args.file)
    file_jobs = parse_jobs(text, source)
    if not file_jobs:
        raise CliError(f"{source}: holds no job")
    by_name = {file_job.name: file_job for file_job in file_jobs}
    # A job naming another of the file in parents or children goes after it.
    for name in save_order({name: fj.job for name, fj in by_name.items()}):
        file_job = by_name[name]
        before = await save_one(client, file_job, source)
        print(f"{'changed' if before else 'created'} {file_job.name}")
    return 0


async def job_rm(client: Client, args: argparse.Namespace) -> int:
    deleted = await client.post(
        "/job/delete", name=args.name, keepRunning=args.keep_running or None,
        purgeLogs=args.purge_logs or None,
    )  # fmt: skip
    if deleted is None:  # the API answers a delete of no job with null, not an error
        raise CliError(f"name: no job {args.name!r}")
    print(f"deleted {args.name}")
    return 0


async def job_run(client: Client, args: argparse.Namespace) -> int:
    asked = await client.post("/job/run", name=args.name)
    plan_time = asked["planTime"]
    if not args.wait:
        print(f"asked a worker to run {args.name} (planTime {plan_time})")
        return 0
    record = await wait_for_run(client, args.name, plan_time)
    code = run_exit_code(record)
    outcome = run_outcome(record) if record else "no record: the run vanished or never started"
    print(f"gdts: {args.name} (planTime {plan_time}): {outcome}", file=sys.stderr)
    return code


async def job_kill(client: Client, args: argparse.Namespace) -> int:
    await client.post("/job/kill", name=args.name)
    print(f"killed the runs of {args.name}")
    return 0


async def job_enable(client: Client, args: argparse.Namespace) -> int:
    enable = args.action == "enable"
    await client.post("/job/enable" if enable else "/job/disable", name=args.name)
    print(f"{'enabled' if enable else 'paused'} {args.name}")
    return 0


async def job_log(client: Client, args: argparse.Namespace) -> int:
    if args.follow:
        await follow_log(client, args.name, args.n, sys.stdout)
        return 0
    runs = await client.get("/job/log", name=args.name, limit=args.n)
    if not runs:
        # An unknown job has no runs either: say which it is.
        require_job(await client.get("/job/list", name=args.name), args.name)
    if args.json:
        print_json(runs)
        return 0
    for run in reversed(runs):
        print_run(run, sys.stdout)
    return 0


async def worker_ls(client: Client, args: argparse.Namespace) -> int:
    workers = await client.get("/worker/list")
    if args.json:
        print_json(workers)
    elif workers:
        print(table(*worker_rows(workers)))
    return 0
