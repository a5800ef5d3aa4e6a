"""The HTTP app of ``lmforge serve`` (FastAPI).

Endpoints: ``GET /health`` (liveness), ``GET /ready`` (model loaded), ``GET /v1/model``,
``POST /v1/classify`` and ``POST /v1/ner`` (``{"texts": [...]}``) for task models,
``POST /v1/embed`` for encoders, ``POST /v1/generate`` for decoders (``"stream": true`` sends
server-sent events, one per token), ``GET /metrics`` (Prometheus text: requests by endpoint and
status, latency histogram, batch sizes, queue depth, generated tokens); OpenAPI at
``/openapi.json``, docs at ``/docs``. The model is loaded once, in the lifespan; texts are
batched (:mod:`lmforge.serving.batcher`), generations run one at a time
(:mod:`lmforge.serving.generation`). A request whose client disconnects or times out is
cancelled: its texts are dropped from the queue unrun, and its generation stops before the next
forward pass. Client mistakes get a 4xx with
a JSON body naming the field — 400 unparsable body, 401 bad key, 413 body too large, 422 invalid payload or a text
over the limits, 429 queue full, 503 not ready, 504 timeout — and no traceback ever reaches the
client.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
from contextlib import asynccontextmanager
from typing import Annotated, Optional, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmforge.errors import InputError, UsageError
from lmforge.serving.batcher import Batcher, QueueFull
from lmforge.serving.config import ServeConfig
from lmforge.serving.generation import Generations
from lmforge.serving.lm_runner import GenerationRequest
from lmforge.serving.openai_api import add_openai_routes
from lmforge.serving.responses import complete, disconnected, error, sse
from lmforge.serving.runner import ENDPOINTS


class TextsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[str] = Field(min_length=1, description="the texts to run the model on")


class ImagesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    images: list[str] = Field(min_length=1, description="image classifiers: PNG/JPEG/BMP/GIF files, base64-encoded (a "
                                                        "data: URL is accepted); or upload them as multipart/form-data")


class AudioRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    audio: list[str] = Field(min_length=1, description="audio classifiers: WAV files (8/16/32-bit PCM), base64-encoded; "
                                                       "or upload them as multipart/form-data")


Cell = Union[StrictBool, StrictInt, StrictFloat, StrictStr, None]


class RowsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows: list[dict[str, Cell]] = Field(min_length=1, description="table models: one object per row, column name → "
                                                                   "value (an absent column is a missing cell)")


# what /v1/classify reads, by the field a model's inputs are listed in (runner.inputs.field; text: texts)
CLASSIFY_BODIES: dict[str, type[BaseModel]] = {"texts": TextsRequest, "images": ImagesRequest, "rows": RowsRequest,
                                               "audio": AudioRequest}


def _classify_kinds() -> tuple[str, ...]:
    from lmforge.kinds import KINDS

    return ("sequence", *(k.name for k in KINDS.values() if k.inputs))  # text classifiers, image/table models


def _field(runner) -> str:
    inputs = getattr(runner, "inputs", None)
    return inputs.field if inputs is not None else "texts"


class EmbedRequest(TextsRequest):
    normalize: bool = Field(True, description="scale each vector to unit length (cosine similarity = dot product)")


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(description="text to continue (empty: start from the tokenizer's BOS)")
    max_new_tokens: Optional[int] = Field(None, ge=1, description="at most this many new tokens (default 64, or the "
                                                                     "server's --max-new-tokens if lower)")
    temperature: float = Field(1.0, ge=0.0, le=100.0, description="0 = greedy")
    top_k: Optional[int] = Field(None, ge=1, description="sample among the k most likely tokens")
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0, description="nucleus sampling: smallest set with this much probability")
    stop: list[Annotated[str, Field(max_length=256)]] = Field(
        default_factory=list, max_length=8, description="end the text before the first of these strings (8 at most, 256 characters each)")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="same seed, same prompt, same settings: same text")
    ignore_eos: bool = Field(False, description="go on past the end-of-text token (for benchmarks: always max_new_tokens)")
    stream: bool = Field(False, description="send server-sent events: one per token, then the final record")




class _Metrics:
    """The Prometheus figures of one app (its own registry: several apps may live in one process)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry = CollectorRegistry()
        self.requests = Counter("lmforge_requests", "requests by endpoint and status", ["endpoint", "status"],
                                registry=registry)
        self.latency = Histogram("lmforge_request_seconds", "request latency", ["endpoint"], registry=registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.batch_sizes = Histogram("lmforge_batch_size", "texts per forward pass", registry=registry,
                                     buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.queue_depth = Gauge("lmforge_queue_texts", "texts (or generation requests) waiting for the model",
                                 registry=registry)
        self.running = Gauge("lmforge_generations_running", "generations running now", registry=registry)
        self.tokens_out = Counter("lmforge_generated_tokens", "tokens generated", registry=registry)

    def text(self) -> str:
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()


class _Server:
    """What the routes share: the config, the loaded model and its queue, metrics and rate buckets."""

    def __init__(self, cfg: ServeConfig):
        self.cfg, self.metrics = cfg, _Metrics()
        self.api_key = cfg.api_key or os.environ.get("LMFORGE_API_KEY")
        self.state: dict = {}  # runner, and batcher (task models, encoders) or generations (decoders)
        self.buckets: dict[str, list[float]] = {}  # client → [tokens, last refill time]; bounded, see over_rate
        self.started = int(time.time())  # /v1/models' "created"

    @asynccontextmanager
    async def serving(self, runner):
        """Load the model (unless given), start its batcher or generation queue; stop them at shutdown."""
        from lmforge.serving.runner import load_runner

        cfg, m = self.cfg, self.metrics
        r = runner if runner is not None else await asyncio.get_running_loop().run_in_executor(None, load_runner, cfg)
        if r.kind == "causal_lm":
            if getattr(r, "model", None) is not None and cfg.generation_batch > 1:  # torch decoder with KV cache
                from lmforge.serving.batched_generation import BatchedGenerations

                gens = BatchedGenerations(r, cfg.max_queue, m.tokens_out.inc, cfg.generation_batch)
            else:
                gens = Generations(r, cfg.max_queue, m.tokens_out.inc)
            m.queue_depth.set_function(lambda: gens.waiting)
            m.running.set_function(lambda: gens.running)
            self.state.update(runner=r, generations=gens)
            yield
            gens.shutdown()
            return
        b = Batcher(r.predict, cfg.max_batch_size, cfg.max_wait_ms, cfg.max_queue, m.batch_sizes.observe)
        b.start()
        m.queue_depth.set_function(lambda: b.queued_texts)
        self.state.update(runner=r, batcher=b)
        yield
        await b.stop()

    def over_rate(self, client: str) -> float:
        """0 when ``client`` may send a request now (a token is taken), else seconds until it may."""
        rate, buckets = self.cfg.rate_limit, self.buckets
        burst = max(1.0, rate)
        now = time.monotonic()
        tokens, last = buckets.get(client, (burst, now))
        tokens = min(burst, tokens + (now - last) * rate)
        if client not in buckets and len(buckets) >= 100_000:  # forget full buckets: they are the default
            for k in [k for k, (tk, t) in buckets.items() if tk + (now - t) * rate >= burst]:
                del buckets[k]
        if tokens >= 1.0:
            buckets[client] = [tokens - 1.0, now]
            return 0.0
        buckets[client] = [tokens, now]
        return (1.0 - tokens) / rate

    def refusal(self, path: str, headers: dict, scope) -> Optional[JSONResponse]:
        """The response that refuses a request before it runs (key, rate, size), counted; None to let it in."""
        cfg, requests = self.cfg, self.metrics.requests
        if self.api_key and path.startswith("/v1/") and not hmac.compare_digest(headers.get("authorization", ""),
                                                                                 f"Bearer {self.api_key}"):
            requests.labels(path, "401").inc()
            return error(401, "Authorization", "missing or wrong API key (Authorization: Bearer KEY)")
        if cfg.rate_limit and path.startswith("/v1/"):
            # the key names the client only when keys are checked; otherwise anyone could pick a new one
            client = headers.get("authorization", "") if self.api_key else (scope.get("client") or ("?",))[0]
            wait = self.over_rate(client)
            if wait:
                requests.labels(path, "429").inc()
                resp = error(429, None, f"rate limit: {cfg.rate_limit:g} requests/s per client; retry in {wait:.2f} s")
                resp.headers["Retry-After"] = str(max(1, round(wait + 0.5)))
                return resp
        size = headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > cfg.max_body_bytes:
            requests.labels(path, "413").inc()
            return error(413, None, f"request body of {size} bytes is over the limit of {cfg.max_body_bytes}")
        return None

    async def guard(self, scope, receive, send, inner) -> None:
        """API key, rate, body size, status counts and latency — as plain ASGI, so the endpoint still
        sees the client's disconnect (a BaseHTTPMiddleware would hide it)."""
        path = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if (refused := self.refusal(path, headers, scope)) is not None:
            return await refused(scope, receive, send)
        t0, status = time.perf_counter(), {}

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await inner(scope, receive, send_and_note)
        except Exception:  # a bug: logged here, a plain 500 to the client
            logging.getLogger("lmforge.serve").exception("%s %s failed", scope.get("method"), path)
            self.metrics.requests.labels(path, "500").inc()
            if "code" not in status:
                await error(500, None, "internal error")(scope, receive, send)
            return
        self.metrics.requests.labels(path, str(status.get("code", 500))).inc()
        self.metrics.latency.labels(path).observe(time.perf_counter() - t0)

    def wrong_model(self, *kinds: str) -> Optional[JSONResponse]:
        """None when the loaded model is of one of ``kinds``; else the error response."""
        r = self.state.get("runner")
        if r is None:
            return error(503, None, "model not loaded yet")
        if r.kind not in kinds:
            return error(404, None, f"this model is a {r.kind} model: use {ENDPOINTS[r.kind]}")
        return None

    async def run(self, texts: list[str], kind: str, request: Request):
        """The batched model's results for ``texts``, or the error response (limits, queue full, timeout, gone)."""
        cfg = self.cfg
        if (bad := self.wrong_model(kind)) is not None:
            return bad
        if len(texts) > cfg.max_texts:  # (/v1/classify checks its items, texts or not, before decoding them)
            return error(422, "texts", f"{len(texts)} texts; at most {cfg.max_texts} per request")
        for i, t in enumerate(texts):
            if isinstance(t, str) and len(t) > cfg.max_chars:  # decoded images and rows have no characters
                return error(422, f"texts.{i}", f"{len(t)} characters; at most {cfg.max_chars} per text")
        work = asyncio.ensure_future(asyncio.wait_for(self.state["batcher"].submit(texts), cfg.timeout_s))
        watch = asyncio.ensure_future(disconnected(request))
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():  # the client went away: drop its queued work
            work.cancel()
            return error(499, None, "client disconnected")  # nobody reads it; counted as 499
        watch.cancel()
        try:
            return work.result()
        except QueueFull:
            return error(429, None, "too many texts waiting; retry later")
        except asyncio.TimeoutError:
            return error(504, None, f"no result within {cfg.timeout_s} s")


def build_app(cfg: ServeConfig, runner=None) -> FastAPI:
    """The app for ``cfg``; ``runner`` (a loaded :class:`~lmforge.serving.runner.Runner`) may be
    given to reuse one, otherwise it is loaded at startup."""
    srv = _Server(cfg)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with srv.serving(runner):
            yield

    app = FastAPI(title="lmforge", lifespan=lifespan)

    class Guard:
        def __init__(self, inner):
            self.inner = inner

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                return await self.inner(scope, receive, send)
            await srv.guard(scope, receive, send, self.inner)

    app.add_middleware(Guard)
    _add_common_routes(app, srv)
    for add in ROUTES.values():  # every model kind's endpoints; a request for another kind gets a 404 naming its own
        add(app, srv)
    add_openai_routes(app, srv)  # /v1/models, /v1/completions, /v1/embeddings for the openai client
    return app


def _add_common_routes(app: FastAPI, srv: _Server) -> None:
    """Errors as JSON naming the field; liveness, readiness, the model's facts, metrics."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(x) for x in first.get("loc", ()) if x != "body") or None
        return error(422, field, first.get("msg", "invalid request"))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):  # e.g. an unparsable body, 404, 405
        return error(exc.status_code, None, str(exc.detail))

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        if "runner" not in srv.state:
            return error(503, None, "model not loaded yet")
        return {"status": "ready"}

    @app.get("/v1/model")
    async def model_info():
        return {**srv.state["runner"].info(), "version": _version(), "pid": os.getpid()}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(srv.metrics.text(), media_type="text/plain; version=0.0.4")


def _classify_openapi() -> dict:
    """/v1/classify's request body: JSON for every classifier kind, multipart uploads for images."""
    schemas = [m.model_json_schema() for m in CLASSIFY_BODIES.values()]  # one per kind of classifier
    files = {"type": "array", "items": {"type": "string", "format": "binary"}}
    upload = {"type": "object", "properties": {"images": files, "audio": files}}  # image or audio models
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": schemas}},
                                                          "multipart/form-data": {"schema": upload}}}}


def _add_classify(app: FastAPI, srv: _Server) -> None:
    @app.post("/v1/classify", openapi_extra=_classify_openapi())
    async def classify(request: Request):
        """Label, score and every class probability per input: ``{"texts": [...]}`` for a text
        classifier, ``{"images": [base64, ...]}`` or a multipart upload for an image model,
        ``{"rows": [{column: value}, ...]}`` for a table model (regression: the prediction)."""
        if (bad := srv.wrong_model(*_classify_kinds())) is not None:
            return bad
        runner = srv.state["runner"]
        items = await _classify_items(request, runner, srv.cfg)
        if isinstance(items, JSONResponse):
            return items
        out = await srv.run(items, runner.kind, request)
        return out if isinstance(out, JSONResponse) else {"results": [_public(x) for x in out]}


async def _classify_items(request: Request, runner, cfg: ServeConfig):
    """The request's inputs, ready for the runner (texts, decoded images, checked rows), or the 4xx response."""
    field, inputs = _field(runner), getattr(runner, "inputs", None)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        if not getattr(inputs, "uploads", False):
            return error(415, None, f"multipart uploads are for image and audio models; send JSON {{\"{field}\": [...]}}")
        try:
            form = await request.form(max_files=cfg.max_texts, max_fields=cfg.max_texts)
        except Exception:  # a malformed multipart body, or more files than allowed
            return error(400, None, f"unreadable multipart body (at most {cfg.max_texts} files)")
        raw = [await v.read() for _, v in form.multi_items() if hasattr(v, "read")]
        if not raw:
            return error(422, field, f"the upload holds no file (send them in form field {field})")
    else:
        body = await _json_body(request, CLASSIFY_BODIES[field])
        if isinstance(body, JSONResponse):
            return body
        raw = getattr(body, field)
    if len(raw) > cfg.max_texts:
        return error(422, field, f"{len(raw)} {field}; at most {cfg.max_texts} per request")
    if inputs is None:  # texts go to the model as they are
        return raw
    items = []
    for i, x in enumerate(raw):
        try:
            items.append(inputs.item(x))
        except InputError as exc:
            return error(422, f"{field}.{i}" + (f".{exc.part}" if exc.part else ""), str(exc))
    return items


async def _json_body(request: Request, model: type[BaseModel]):
    """The body validated as ``model``: 400 when it is not text, 422 naming the field otherwise."""
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        return error(400, None, "the body is not UTF-8 text")
    try:
        return model.model_validate(json.loads(text))
    except json.JSONDecodeError as exc:
        return error(422, None, f"the body is not valid JSON ({exc.msg} at character {exc.pos})")
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {}
        return error(422, ".".join(str(x) for x in first.get("loc", ())) or None, first.get("msg", "invalid request"))


def _add_ner(app: FastAPI, srv: _Server) -> None:
    @app.post("/v1/ner")
    async def ner(req: TextsRequest, request: Request):
        """Entities per text, with type, score and character offsets into the text."""
        out = await srv.run(req.texts, "token", request)
        return out if isinstance(out, JSONResponse) else {"results": [_public(x) for x in out]}


def _add_embed(app: FastAPI, srv: _Server) -> None:
    @app.post("/v1/embed")
    async def embed(req: EmbedRequest, request: Request):
        """One pooled vector per text (mean of the encoder's hidden states over real tokens)."""
        out = await srv.run(req.texts, "encoder", request)
        if isinstance(out, JSONResponse):
            return out
        res = []
        for x in out:
            v = x["embedding"]
            if req.normalize:
                v = v / max(float(np.linalg.norm(v)), 1e-12)
            res.append({"embedding": [float(f) for f in v], "tokens": x["tokens"], "truncated": x["truncated"]})
        return {"results": res, "dimension": len(res[0]["embedding"]), "normalized": req.normalize}


def _add_generate(app: FastAPI, srv: _Server) -> None:
    cfg = srv.cfg

    @app.post("/v1/generate")
    async def generate(req: GenerateRequest, request: Request):
        """A completion of ``prompt``: the text, why it ended, token counts; with ``stream`` as
        server-sent events (``data: {"token": id, "text": piece}`` per token, then
        ``data: {"done": true, ...}`` and ``data: [DONE]``)."""
        if (bad := srv.wrong_model("causal_lm")) is not None:
            return bad
        if req.max_new_tokens is None:
            req.max_new_tokens = min(64, cfg.max_new_tokens)
        if req.max_new_tokens > cfg.max_new_tokens:
            return error(422, "max_new_tokens", f"{req.max_new_tokens}; this server allows at most {cfg.max_new_tokens}")
        if len(req.prompt) > cfg.max_chars:
            return error(422, "prompt", f"{len(req.prompt)} characters; at most {cfg.max_chars}")
        try:
            srv.state["runner"].prompt_ids(req.prompt)
        except UsageError as exc:
            return error(422, "prompt", str(exc))
        params = GenerationRequest(req.prompt, req.max_new_tokens, req.temperature, req.top_k, req.top_p,
                                   list(req.stop), req.seed, req.ignore_eos)
        try:
            job = srv.state["generations"].submit(params)
        except QueueFull:
            return error(429, None, "too many generations waiting; retry later")
        if req.stream:
            stream = sse(job, cfg.timeout_s, lambda token, text: [{"token": token, "text": text}],
                         lambda record: [{"done": True, **record}])
            return StreamingResponse(stream, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        return await complete(job, request, cfg.timeout_s)


# the endpoints of each model kind a runner can hold (runner.kind → its routes); see runner.ENDPOINTS
ROUTES = {"classify": _add_classify, "token": _add_ner, "encoder": _add_embed, "causal_lm": _add_generate}


def _public(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "line"}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lmforge")
    except PackageNotFoundError:
        return "unknown"
