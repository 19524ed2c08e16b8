"""Where the client finds its manager and token: ``--url``/``--token``, else ``GDTS_URL`` and
``GDTS_TOKEN``, else the credentials file ``gdts login`` writes
(``$XDG_CONFIG_HOME/gdts/credentials``, by default ``~/.config/gdts/credentials``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8070"


class CliError(Exception):
    """Something the user can fix: one line on stderr, no traceback, exit status ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class Target:
    url: str
    token: str | None


def credentials_path(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")) / ".config")
    return Path(base).expanduser() / "gdts" / "credentials"


def read_credentials(path: Path) -> dict[str, str]:
    """The stored ``{"url", "token"}``; empty if there is no file."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise CliError(f"{path}: cannot be read ({exc.strerror})") from None
    except ValueError:
        raise CliError(f"{path}: not valid JSON; run gdts login again") from None
    if not isinstance(data, dict):
        raise CliError(f"{path}: must hold a JSON object; run gdts login again")
    return {k: v for k, v in data.items() if k in ("url", "token") and isinstance(v, str)}


def write_credentials(path: Path, url: str, token: str) -> None:
    """Only the user may read the token: the directory 0700, the file 0600, created so (never
    readable by others between its creation and a chmod)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    temporary = path.with_name(path.name + ".new")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump({"url": url, "token": token}, file)
        file.write("\n")
    temporary.replace(path)


def resolve_target(url: str | None, token: str | None, environ: Mapping[str, str]) -> Target:
    """Flags first, then the environment, then the credentials file; the file's token is used
    only for the manager it was made on (another ``--url`` gets no token from it)."""
    stored = read_credentials(credentials_path(environ))
    chosen_url = url or environ.get("GDTS_URL") or stored.get("url") or DEFAULT_URL
    chosen_token = token or environ.get("GDTS_TOKEN")
    if chosen_token is None and stored.get("url", "").rstrip("/") == chosen_url.rstrip("/"):
        chosen_token = stored.get("token")
    if not chosen_url.startswith(("http://", "https://")):
        raise CliError(f"manager URL {chosen_url!r}: must start with http:// or https://", 2)
    return Target(chosen_url.rstrip("/"), chosen_token)
