"""``gdts login``: a password login, then an API token made for this machine and stored in the
credentials file, so that later commands need neither."""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import sys

from gdts.cli.client import Client
from gdts.cli.config import CliError, Target, credentials_path, write_credentials


def ask_credentials(args: argparse.Namespace) -> tuple[str, str]:
    username = args.username
    if not username:
        if not sys.stdin.isatty():
            raise CliError("--username is required when standard input is not a terminal")
        username = input("Username: ").strip()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        try:
            password = getpass.getpass("Password: ")
        except EOFError:
            password = ""
    if not username or not password:
        raise CliError("a username and a password are needed")
    return username, password


async def login(target: Target, args: argparse.Namespace) -> int:
    username, password = ask_credentials(args)
    # A token the caller already has is not what logs in: the session is the user's own.
    async with Client(Target(target.url, None)) as client:
        me = await client.post("/auth/login", username=username, password=password)
        # A change made with the session cookie carries the session's CSRF token.
        client.csrf_token = me.get("csrfToken")
        name = args.token_name or f"gdts-cli@{socket.gethostname()}"
        created = await client.post("/token/create", name=name)
        await client.post("/auth/logout")
    path = credentials_path(os.environ)
    try:
        write_credentials(path, target.url, created["token"])
    except OSError as exc:
        raise CliError(f"{path}: cannot be written ({exc.strerror})") from None
    print(f"logged in to {target.url} as {me.get('username', username)} ({me.get('role')}); "
          f"token {name!r} (id {created.get('id')}) stored in {path}")  # fmt: skip
    return 0
