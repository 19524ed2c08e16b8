"""A webhook receiver for the notification tests: a real HTTP server on loopback that checks
each message's HMAC signature, keeps the bodies, and can go down and come back on its port."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from aiohttp import web

from gdts.localstack import free_port

PUBLIC_URL = "https://gdts.example.test"
# A manager's notifier for tests: it looks every 200 ms and tries a failed delivery again after
# 1 s, doubling up to 4 s, so each test takes seconds.
FAST_NOTIFIER = {"notifyPollInterval": 200, "notifyRetryBackoff": 1000,
                 "notifyRetryMaxBackoff": 4000, "notifyTimeout": 3000,
                 "publicUrl": PUBLIC_URL}  # fmt: skip


class WebhookReceiver:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.port = free_port()
        self.bodies: list[dict[str, Any]] = []
        self.refused: list[str] = []  # what arrived with a wrong or missing signature
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def channel(self, name: str) -> dict[str, Any]:
        return {"name": name, "type": "webhook",
                "settings": {"url": self.url, "secret": self.secret}}  # fmt: skip

    async def up(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def about(self, **fields: Any) -> list[dict[str, Any]]:
        """The bodies whose fields have these values."""
        return [b for b in self.bodies if all(b.get(k) == v for k, v in fields.items())]

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-GDTS-Signature", ""), expected):
            self.refused.append(body.decode(errors="replace"))
            return web.Response(status=401, text="bad signature")
        self.bodies.append(json.loads(body))
        return web.Response(text="ok")
