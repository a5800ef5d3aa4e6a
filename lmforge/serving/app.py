"""The HTTP app of ``lmforge serve`` (FastAPI).

Endpoints: ``GET /health`` (liveness), ``GET /ready`` (model loaded), ``GET /v1/model``,
``POST /v1/classify`` and ``POST /v1/ner`` (``{"texts": [...]}``), ``GET /metrics``
(Prometheus text: requests by endpoint and status, latency histogram, batch sizes, queue
depth); OpenAPI at ``/openapi.json``, docs at ``/docs``. The model is loaded once, in the
lifespan; requests are batched (:mod:`lmforge.serving.batcher`). Client mistakes get a 4xx with
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

    @app.middleware("http")
    async def guard(request: Request, call_next):
        path = request.url.path
        t0 = time.perf_counter()
        if api_key and path.startswith("/v1/"):
            got = request.headers.get("authorization", "")
            if not hmac.compare_digest(got, f"Bearer {api_key}"):
                requests.labels(path, "401").inc()
                return _error(401, "Authorization", "missing or wrong API key (Authorization: Bearer KEY)")
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > cfg.max_body_bytes:
            requests.labels(path, "413").inc()
            return _error(413, None, f"request body of {size} bytes is over the limit of {cfg.max_body_bytes}")
        try:
            response = await call_next(request)
        except Exception:  # a bug: logged by the server, a plain 500 to the client
            requests.labels(path, "500").inc()
            return _error(500, None, "internal error")
        requests.labels(path, str(response.status_code)).inc()
        latency.labels(path).observe(time.perf_counter() - t0)
        return response

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

    async def run(texts: list[str], task: str):
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
        try:
            results = await asyncio.wait_for(state["batcher"].submit(texts), cfg.timeout_s)
        except QueueFull:
            return _error(429, None, "too many texts waiting; retry later")
        except asyncio.TimeoutError:
            return _error(504, None, f"no result within {cfg.timeout_s} s")
        return {"results": [{k: v for k, v in x.items() if k != "line"} for x in results]}

    @app.post("/v1/classify")
    async def classify(req: TextsRequest):
        """Label, score and every class probability per text."""
        return await run(req.texts, "sequence")

    @app.post("/v1/ner")
    async def ner(req: TextsRequest):
        """Entities per text, with type, score and character offsets into the text."""
        return await run(req.texts, "token")

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(generate_latest(registry).decode(), media_type="text/plain; version=0.0.4")

    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lmforge")
    except PackageNotFoundError:
        return "unknown"
