"""Answers every endpoint of ``lmforge serve`` shares: the JSON error body, waiting for a whole
generation, and a generation as server-sent events (lmforge's own stream and the OpenAI-compatible
one differ only in the payload of each event)."""

from __future__ import annotations

import asyncio
import json
from typing import Callable, Iterable, Optional

from fastapi import Request
from fastapi.responses import JSONResponse

from lmforge.errors import UsageError


def error(status: int, field: Optional[str], message: str) -> JSONResponse:
    """``{"error": {"field", "message"}}`` with ``status``."""
    return JSONResponse({"error": {"field": field, "message": message}}, status_code=status)


async def disconnected(request: Request, every_s: float = 0.05) -> None:
    """Returns once the client has closed its connection."""
    while not await request.is_disconnected():
        await asyncio.sleep(every_s)


def generation_error(exc: Exception) -> JSONResponse:
    if isinstance(exc, UsageError):
        return error(422, "prompt", str(exc))
    raise exc  # a bug: the guard answers 500 and the server logs it


async def complete(job, request: Request, timeout_s: float):
    """Wait for a whole generation (its final record, or the error response); a client that leaves
    or a timeout stops it."""
    async def final():
        while True:
            event = await job.events.get()
            if event[0] != "token":
                return event

    work = asyncio.ensure_future(asyncio.wait_for(final(), timeout_s))
    watch = asyncio.ensure_future(disconnected(request))
    await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    if not work.done():
        job.cancel.set()
        work.cancel()
        return error(499, None, "client disconnected")
    watch.cancel()
    try:
        event = work.result()
    except asyncio.TimeoutError:
        job.cancel.set()
        return error(504, None, f"no result within {timeout_s} s")
    if event[0] == "error":
        return generation_error(event[1])
    return event[1]


def sse_line(payload: dict) -> str:
    return f"data: {json.dumps(payload)}\n\n"


async def sse(job, timeout_s: float, on_token: Callable[[int, str], Iterable[dict]],
              on_done: Callable[[dict], Iterable[dict]]):
    """Server-sent events of one generation: the payloads ``on_token(id, text)`` gives for each token
    and ``on_done(record)`` at the end (an error or a wait over ``timeout_s`` for any event, the
    first included, is an ``{"error": ...}`` event), then ``data: [DONE]``. The client leaving
    closes this generator (Starlette cancels the response); ``finally`` then stops the generation."""
    try:
        while True:
            try:
                event = await asyncio.wait_for(job.events.get(), timeout_s)
            except asyncio.TimeoutError:
                yield sse_line({"error": {"field": None, "message": f"no token within {timeout_s} s"}})
                return
            if event[0] == "token":
                for payload in on_token(event[1], event[2]):
                    yield sse_line(payload)
                continue
            if event[0] == "error":
                usage = isinstance(event[1], UsageError)
                yield sse_line({"error": {"field": "prompt" if usage else None,
                                          "message": str(event[1]) if usage else "internal error"}})
            else:
                for payload in on_done(event[1]):
                    yield sse_line(payload)
            yield "data: [DONE]\n\n"
            return
    finally:
        job.cancel.set()
