"""The client's commands on ``gdts``'s parser (``gdts job ...``, ``worker ls``, ``login``,
``export``, ``apply``) and running the one asked for: where its manager and token come from,
and how each failure a user can cause ends (one line on stderr, an exit status, no
traceback)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

EXIT_CODES = """\
exit status:
  0    done
  1    the manager refused (its message and field are printed), could not be reached, or a
       file is wrong (its line and field are printed)
  2    the command line is wrong
  130  interrupted (Ctrl-C)
  job run --wait: the run's exit code when its command ended by itself (a failed run that
  exited 0: 1); otherwise 0 succeeded, 1 failed, 124 timeout, 125 limit, 137 killed,
  3 lost, 4 missed or skipped, 5 no record (the run vanished or never started)"""

CONNECTION = """\
manager and token: --url and --token, else $GDTS_URL and $GDTS_TOKEN, else the file gdts
login writes (~/.config/gdts/credentials; its token only for its own URL); the URL
defaults to http://127.0.0.1:8070."""

Handler = Callable[[Any, argparse.Namespace], Awaitable[int]]


def _leaf(
    commands: Any, name: str, help_text: str, examples: str, common: argparse.ArgumentParser
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=help_text, description=help_text, parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"examples:\n{examples}\n\n{CONNECTION}\n\n{EXIT_CODES}",
    )  # fmt: skip
    return parser


def _group(commands: Any, name: str, help_text: str) -> Any:
    parser = commands.add_parser(name, help=help_text, description=help_text)
    return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


def _runs_count(text: str) -> int:
    """``job log -n``: what /job/log's limit takes, refused as a usage error otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 1000, got {value}")
    return value


def add_client_commands(commands: Any, worker_parser: argparse.ArgumentParser) -> None:
    """Add the client's commands to ``gdts``'s subcommands (and ``ls`` to ``gdts worker``'s);
    each sets ``client`` to the name of its handler, which ``run_client`` runs."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the manager's URL (default: $GDTS_URL, the "
                        "credentials file, http://127.0.0.1:8070)")  # fmt: skip
    common.add_argument("--token", help="an API token (default: $GDTS_TOKEN, the credentials "
                        "file); other users on this host see a command line: prefer "
                        "$GDTS_TOKEN or gdts login")  # fmt: skip

    job = _group(commands, "job", "list, change, run and follow jobs on a manager")
    ls = _leaf(job, "ls", "list the jobs: name, schedule, state, next and last run",
               "  gdts job ls\n  gdts job ls --status failing --tag prod\n"
               "  gdts job ls --json | jq -r '.[].name'", common)  # fmt: skip
    ls.add_argument("--json", action="store_true", help="every field, as /job/list answers")
    ls.add_argument("--name", help="only jobs whose name contains this")
    ls.add_argument("--tag", help="only jobs with every one of these tags (comma-separated)")
    ls.add_argument("--owner", help="only the jobs of this owner")
    ls.add_argument("--status", choices=("failing", "running", "paused"))
    ls.set_defaults(client="jobs:job_ls")

    get = _leaf(job, "get", "show one job", "  gdts job get backup\n"
                "  gdts job get backup -o yaml > backup.yaml   # edit, then gdts job save -f",
                common)  # fmt: skip
    get.add_argument("name")
    get.add_argument("-o", "--output", choices=("json", "yaml"), default="json",
                     help="json: every field and its status (default); yaml: as gdts export "
                     "writes it, ready for job save or apply")  # fmt: skip
    get.set_defaults(client="jobs:job_get")

    save = _leaf(job, "save", "create or replace the jobs of a file (JSON or YAML; one job, "
                 "a list, or jobs: [...])", "  gdts job save -f backup.yaml\n"
                 "  echo '{\"name\": \"hi\", \"command\": \"echo hi\", \"cronExpr\": \"@hourly\"}'"
                 " | gdts job save -f -", common)  # fmt: skip
    save.add_argument("-f", "--file", required=True, help="the file, or - for standard input")
    save.set_defaults(client="jobs:job_save")

    rm = _leaf(job, "rm", "delete a job; its runs going on are killed",
               "  gdts job rm backup\n  gdts job rm backup --keep-running --purge-logs",
               common)  # fmt: skip
    rm.add_argument("name")
    rm.add_argument(
        "--keep-running", action="store_true", help="let its runs going on finish by themselves"
    )
    rm.add_argument("--purge-logs", action="store_true", help="remove its runs from the log")
    rm.set_defaults(client="jobs:job_rm")

    run = _leaf(job, "run", "run a job once now on one worker; with --wait, print its output "
                "as it comes and its status, and exit with its exit code",
                "  gdts job run backup\n  gdts job run backup --wait && echo done",
                common)  # fmt: skip
    run.add_argument("name")
    run.add_argument("--wait", action="store_true", help="follow the run to its end")
    run.set_defaults(client="jobs:job_run")

    kill = _leaf(job, "kill", "kill the job's runs going on, wherever they run",
                 "  gdts job kill backup", common)  # fmt: skip
    kill.add_argument("name")
    kill.set_defaults(client="jobs:job_kill")

    for action, help_text in (("enable", "resume a paused job"), ("disable", "pause a job")):
        toggle = _leaf(job, action, help_text, f"  gdts job {action} backup", common)
        toggle.add_argument("name")
        toggle.set_defaults(client="jobs:job_enable", action=action)

    log = _leaf(job, "log", "the job's newest runs with their output, oldest first; with "
                "--follow, then every new run, live while it goes on (Ctrl-C ends it)",
                "  gdts job log backup\n  gdts job log backup -n 5 --follow", common)  # fmt: skip
    log.add_argument("name")
    log.add_argument("-n", type=_runs_count, default=20, metavar="N",
                     help="how many runs (default 20, at most 1000)")  # fmt: skip
    log.add_argument("--follow", "-F", action="store_true", help="then follow new runs")
    log.add_argument("--json", action="store_true", help="the runs as /job/log answers")
    log.set_defaults(client="jobs:job_log")

    # "gdts worker" alone runs a worker; "gdts worker ls" asks a manager about them.
    worker = worker_parser.add_subparsers(
        dest="worker_command", metavar="[ls]", title="command",
        help="without one: run a worker; ls: list a manager's live workers (gdts worker ls -h)",
    )  # fmt: skip
    wls = _leaf(worker, "ls", "the live workers", "  gdts worker ls\n  gdts worker ls --json",
                common)  # fmt: skip
    wls.add_argument("--json", action="store_true", help="every field, as /worker/list answers")
    wls.set_defaults(client="jobs:worker_ls")

    login = _leaf(commands, "login", "log in with a password, make an API token for this "
                  "machine and store it (~/.config/gdts/credentials, mode 0600) with the URL",
                  "  gdts login --url https://gdts.example.com\n"
                  "  pass show gdts | gdts login --username ci --password-stdin",
                  common)  # fmt: skip
    login.add_argument("--username", help="who logs in (default: asked)")
    login.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input's first line",
    )
    login.add_argument("--token-name", help="the token's name (default gdts-cli@<hostname>)")
    login.set_defaults(client="login")

    export = _leaf(commands, "export", "print every job as YAML: sorted by name, fields in a "
                   "fixed order, without the fields the server owns; for a file in git",
                   "  gdts export > jobs.yaml\n  gdts export --team ops > ops.yaml",
                   common)  # fmt: skip
    export.add_argument("--team", help="only this team's jobs (no team: team default)")
    export.set_defaults(client="apply:export_jobs")

    apply = _leaf(commands, "apply", "make the server's jobs match a file: print what it "
                  "creates, changes and deletes, then do it (a second apply changes nothing)",
                  "  gdts apply -f jobs.yaml --dry-run\n  gdts apply -f jobs.yaml\n"
                  "  gdts apply -f ops.yaml --team ops --prune", common)  # fmt: skip
    apply.add_argument("-f", "--file", required=True, help="the file, or - for standard input")
    apply.add_argument("--dry-run", action="store_true", help="print the plan only")
    apply.add_argument(
        "--prune", action="store_true", help="also delete the server's jobs the file does not have"
    )
    apply.add_argument("--team", help="with --prune: delete only this team's jobs")
    apply.set_defaults(client="apply:apply_jobs")


def run_client(args: argparse.Namespace) -> int:
    """Run the command ``args.client`` names; every failure a user can cause is one line on
    stderr and an exit status, never a traceback."""
    from gdts.cli.config import CliError

    try:
        return asyncio.run(_run(args))
    except CliError as exc:
        print(f"gdts: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `gdts job log x | head`: the reader has what it wanted
        # Python flushes stdout once more at exit: let that write go nowhere, quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


async def _run(args: argparse.Namespace) -> int:
    from gdts.cli.client import Client
    from gdts.cli.config import resolve_target

    target = resolve_target(args.url, args.token, os.environ)
    if args.client == "login":
        from gdts.cli.login import login

        return await login(target, args)
    module_name, _, function = args.client.partition(":")
    module = importlib.import_module(f"gdts.cli.{module_name}")
    handler: Handler = getattr(module, function)
    async with Client(target) as client:
        return await handler(client, args)
