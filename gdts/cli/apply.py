"""Jobs as files against the server: ``gdts export`` writes every job (of a team) in the form
of gdts.cli.manifest; ``gdts apply`` makes the server match a file, one request per job, and
changes nothing when it already does."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gdts.cli.client import ApiError, Client
from gdts.cli.config import CliError
from gdts.cli.manifest import (
    SERVER_OWNED,
    FileJob,
    ManifestError,
    check_jobs,
    dump_jobs,
    normalize,
    parse_jobs,
)
from gdts.cli.plan import make_plan
from gdts.errors import InvalidFieldError
from gdts.jobfields import team_of


def read_file(path: str) -> tuple[str, str]:
    """A file's text and the name errors give it (``-``: standard input)."""
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        return Path(path).read_text(), path
    except OSError as exc:
        raise CliError(f"{path}: cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise CliError(f"{path}: not UTF-8 text") from None


async def save_one(client: Client, file_job: FileJob, source: str) -> Any:
    """``/job/save`` with a file's job as it is written; a refusal names the file's line of
    the field the API names."""
    job = {k: v for k, v in file_job.job.items() if k not in SERVER_OWNED}
    try:
        return await client.post("/job/save", job=json.dumps(job))
    except ApiError as exc:
        if exc.field is None or exc.status >= 500:
            raise
        line = file_job.line_of(exc.field)
        raise ManifestError(source, line, f"job {file_job.name!r}: {exc}") from None


async def default_zone(client: Client) -> str:
    """The manager's defaultTimezone: what a job without a timezone gets. /cron/preview reads
    an expression in it when none is given, and says which it used."""
    preview = await client.get("/cron/preview", cronExpr="0 0 * * *", count=1)
    return str(preview["timezone"])


async def normalized_jobs(
    client: Client, jobs: list[dict[str, Any]], zone: str | None = None
) -> list[dict[str, Any]]:
    """``zone``: the manager's defaultTimezone, if already read."""
    zone = zone or await default_zone(client)
    out = []
    for job in jobs:
        try:
            out.append(normalize(job, zone))
        except InvalidFieldError as exc:  # a newer server's job this client cannot read
            raise CliError(f"the server's job {job.get('name')!r}: {exc}; upgrade gdts") from None
    return out


async def export_jobs(client: Client, args: argparse.Namespace) -> int:
    jobs = await _all(client)
    if args.team is not None:
        jobs = [job for job in jobs if team_of(job) == args.team]
    sys.stdout.write(dump_jobs(await normalized_jobs(client, jobs)))
    return 0


async def apply_jobs(client: Client, args: argparse.Namespace) -> int:
    text, source = read_file(args.file)
    file_jobs = parse_jobs(text, source)
    if not file_jobs and args.prune:
        # Most likely a wrong or truncated file, not a wish to delete every job.
        raise CliError(f"{source}: holds no job, and with --prune that would delete every "
                       "job; delete them with gdts job rm")  # fmt: skip
    zone = await default_zone(client)
    wanted = {fj.name: job for fj, job in zip(file_jobs, check_jobs(file_jobs, source, zone),
                                              strict=True)}  # fmt: skip
    current = {job["name"]: job for job in await normalized_jobs(client, await _all(client), zone)}
    plan = make_plan(wanted, current, prune=args.prune, team=args.team)
    for line in plan.lines():
        print(line)
    print(plan.summary())
    if plan.empty or args.dry_run:
        if args.dry_run and not plan.empty:
            print("dry run: nothing changed")
        return 0
    by_name = {fj.name: fj for fj in file_jobs}
    for name in plan.create:
        await save_one(client, by_name[name], source)
        print(f"created {name}")
    for change in plan.change:
        await save_one(client, by_name[change.name], source)
        print(f"changed {change.name}")
    for name in plan.delete:
        await client.post("/job/delete", name=name)
        print(f"deleted {name}")
    return 0


async def _all(client: Client) -> list[dict[str, Any]]:
    jobs = await client.get("/job/list")
    if not isinstance(jobs, list):
        raise CliError("/job/list: answered no list of jobs")
    return jobs
