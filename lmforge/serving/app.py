"""The HTTP app of ``lmforge serve`` (FastAPI).

Endpoints: ``GET /health`` (liveness), ``GET /ready`` (model loaded), ``GET /v1/model``,
``POST /v1/classify`` and ``POST /v1/ner`` (``{"texts": [...]}``), ``GET /metrics``
(Prometheus text: requests by endpoint and status, latency histogram, batch sizes, queue
depth); OpenAPI at ``/openapi.json``, docs at ``/docs``. The model is loaded once, in the
lifespan; requests are batched (:mod:`lmforge.serving.batcher`); a request whose client
disconnects or times out is cancelled, and its texts are dropped from the queue unrun. Client mistakes get a 4xx with
a JSON body naming the field — 400 unparsable body, 401 bad key, 413 body too large, 422 invalid payload or a text
over the limits, 429 queue full, 503 not ready, 504 timeout — and no traceback ever reaches the
client.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmforge.serving.batcher import Batcher, QueueFull
from lmforge.serving.config import ServeConfig


class TextsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[str] = Field(min_length=1, description="the texts to run the model on")


def _error(status: int, field: str | None, message: str) -> JSONResponse:
    return JSONResponse({"error": {"field": field, "message": message}}, status_code=status)


def build_app(cfg: ServeConfig, runner=None) -> FastAPI:
    """The app for ``cfg``; ``runner`` (a loaded :class:`~lmforge.serving.runner.Runner`) may be
    given to reuse one, otherwise it is loaded at startup."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

    registry = CollectorRegistry()
    requests = Counter("lmforge_requests", "requests by endpoint and status", ["endpoint", "status"], registry=registry)
    latency = Histogram("lmforge_request_seconds", "request latency", ["endpoint"], registry=registry,
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
    batch_sizes = Histogram("lmforge_batch_size", "texts per forward pass", registry=registry,
                            buckets=(1, 2, 4, 8, 16, 32, 64, 128))
    queue_depth = Gauge("lmforge_queue_texts", "texts waiting for a forward pass", registry=registry)
    api_key = cfg.api_key or os.environ.get("LMFORGE_API_KEY")
    state: dict = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from lmforge.serving.runner import Runner

        r = runner if runner is not None else await asyncio.get_running_loop().run_in_executor(None, Runner, cfg)
        b = Batcher(r.predict, cfg.max_batch_size, cfg.max_wait_ms, cfg.max_queue, batch_sizes.observe)
        b.start()
        queue_depth.set_function(lambda: b.queued_texts)
        state.update(runner=r, batcher=b)
        yield
        await b.stop()

    app = FastAPI(title="lmforge", lifespan=lifespan)

    async def guard(scope, receive, send, inner) -> None:
        """API key, body size, status counts and latency — as plain ASGI, so the endpoint still
        sees the client's disconnect (a BaseHTTPMiddleware would hide it)."""
        path = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if api_key and path.startswith("/v1/") and not hmac.compare_digest(headers.get("authorization", ""),
                                                                            f"Bearer {api_key}"):
            requests.labels(path, "401").inc()
            return await _error(401, "Authorization", "missing or wrong API key (Authorization: Bearer KEY)")(
                scope, receive, send)
        size = headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > cfg.max_body_bytes:
            requests.labels(path, "413").inc()
            return await _error(413, None, f"request body of {size} bytes is over the limit of {cfg.max_body_bytes}")(
                scope, receive, send)
        t0, status = time.perf_counter(), {}

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await inner(scope, receive, send_and_note)
        except Exception:  # a bug: logged by the server, a plain 500 to the client
            requests.labels(path, "500").inc()
            if "code" not in status:
                await _error(500, None, "internal error")(scope, receive, send)
            return
        requests.labels(path, str(status.get("code", 500))).inc()
        latency.labels(path).observe(time.perf_counter() - t0)

    class Guard:
        def __init__(self, inner):
            self.inner = inner

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                return await self.inner(scope, receive, send)
            await guard(scope, receive, send, self.inner)

    app.add_middleware(Guard)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(x) for x in first.get("loc", ()) if x != "body") or None
        return _error(422, field, first.get("msg", "invalid request"))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):  # e.g. an unparsable body, 404, 405
        return _error(exc.status_code, None, str(exc.detail))

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        if "runner" not in state:
            return _error(503, None, "model not loaded yet")
        return {"status": "ready"}

    @app.get("/v1/model")
    async def model_info():
        return {**state["runner"].info(), "version": _version()}

    async def run(texts: list[str], task: str, request: Request):
        r = state.get("runner")
        if r is None:
            return _error(503, None, "model not loaded yet")
        if r.task_name != task:
            other = "/v1/ner" if r.task_name == "token" else "/v1/classify"
            return _error(404, None, f"this model is a {r.task_name} model: use {other}")
        if len(texts) > cfg.max_texts:
            return _error(422, "texts", f"{len(texts)} texts; at most {cfg.max_texts} per request")
        for i, t in enumerate(texts):
            if len(t) > cfg.max_chars:
                return _error(422, f"texts.{i}", f"{len(t)} characters; at most {cfg.max_chars} per text")
        work = asyncio.ensure_future(asyncio.wait_for(state["batcher"].submit(texts), cfg.timeout_s))
        watch = asyncio.ensure_future(_disconnected(request))
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():  # the client went away: drop its queued work
            work.cancel()
            return _error(499, None, "client disconnected")  # nobody reads it; counted as 499
        watch.cancel()
        try:
            results = work.result()
        except QueueFull:
            return _error(429, None, "too many texts waiting; retry later")
        except asyncio.TimeoutError:
            return _error(504, None, f"no result within {cfg.timeout_s} s")
        return {"results": [{k: v for k, v in x.items() if k != "line"} for x in results]}

    @app.post("/v1/classify")
    async def classify(req: TextsRequest, request: Request):
        """Label, score and every class probability per text."""
        return await run(req.texts, "sequence", request)

    @app.post("/v1/ner")
    async def ner(req: TextsRequest, request: Request):
        """Entities per text, with type, score and character offsets into the text."""
        return await run(req.texts, "token", request)

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(generate_latest(registry).decode(), media_type="text/plain; version=0.0.4")

    return app


async def _disconnected(request: Request, every_s: float = 0.05) -> None:
    """Returns once the client has closed its connection."""
    while not await request.is_disconnected():
        await asyncio.sleep(every_s)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lmforge")
    except PackageNotFoundError:
        return "unknown"
