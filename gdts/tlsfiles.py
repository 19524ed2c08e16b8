"""Certificate files named in config, checked when a process starts: a missing, unreadable or
mismatched file stops it with an error naming the config key, not at the first handshake."""

from __future__ import annotations

import ssl
from pathlib import Path

from gdts.errors import ConfigError


def load_cert_chain(
    context: ssl.SSLContext, cert_key: str, cert_path: str, key_key: str, key_path: str
) -> None:
    for key, path in ((cert_key, cert_path), (key_key, key_path)):
        try:
            Path(path).open("rb").close()
        except OSError as exc:
            raise ConfigError(key, f"cannot read {path} ({exc.strerror})") from None
    try:
        # An empty password, not none: OpenSSL would prompt on the terminal for an encrypted
        # key, and a service has nobody to answer.
        context.load_cert_chain(cert_path, key_path, password=b"")
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            cert_key,
            f"{cert_path} and {key_key} {key_path} are not a PEM certificate chain and its "
            f"unencrypted key ({exc})",
        ) from None


def server_context(cert_key: str, cert_path: str, key_key: str, key_path: str) -> ssl.SSLContext:
    """HTTPS for the manager: TLS 1.2 or newer."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    load_cert_chain(context, cert_key, cert_path, key_key, key_path)
    return context
