"""An ASGI middleware that caps a request body at `max_bytes`, so no upload can fill the server's memory or disk.

A declared Content-Length over the cap is refused before a byte of the body is read. A body without one (chunked)
is counted as it streams: at the first chunk over the cap the app's receive raises, whatever the app answers
then is replaced by the 413, and the rest of the body is never read.
"""
from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    """Raised inside the app's receive() once the body passes the cap."""


async def send_error(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.app, self.max_bytes = app, max_bytes

    def message(self) -> str:
        return (f"upload over the limit of {self.max_bytes} bytes ({self.max_bytes / 2**20:.1f} MiB); "
                "the server's --max-upload-mb raises it")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await send_error(send, 413, self.message())
            return
        received, over, replaced = 0, False, False

        async def limited_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = True
                    raise BodyTooLarge(self.message())
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal replaced
            if over:  # the app answered the aborted body (e.g. a 400 "error parsing the body"): answer 413 instead
                if not replaced:
                    replaced = True
                    await send_error(send, 413, self.message())
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if not replaced:
                replaced = True
                await send_error(send, 413, self.message())
