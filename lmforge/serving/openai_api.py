"""OpenAI-compatible endpoints beside lmforge's own, so the official ``openai`` client (and anything
built on it) works unchanged against ``lmforge serve`` with ``base_url=http://HOST:PORT/v1``.

* ``GET /v1/models`` — the one model this server holds (its id is the model folder's name).
* ``POST /v1/completions`` (decoders) — ``prompt`` (a string, or a list of one), ``max_tokens``
  (default 16), ``temperature``, ``top_p``, ``stop`` (a string or up to 4), ``seed``, ``stream``
  (server-sent ``text_completion`` chunks, then ``data: [DONE]``; ``stream_options.include_usage``
  adds a last chunk with the usage), ``n`` = 1. The answer has OpenAI's shape: ``id``, ``object``,
  ``created``, ``model``, ``choices`` (``text``, ``index``, ``logprobs``: null, ``finish_reason``:
  ``stop`` or ``length``) and ``usage``. Runs through the same generation queue as
  ``/v1/generate``: the same seed and settings give the same text.
* ``POST /v1/embeddings`` (encoders) — ``input`` (a string or a list), ``encoding_format``
  ``float`` or ``base64`` (little-endian float32, what the client asks for by default); vectors
  are unit length (as OpenAI's are), with ``usage.prompt_tokens``.

Errors keep lmforge's body (``{"error": {"field", "message"}}``), which the client raises as its
``APIStatusError`` subclasses (422 → ``UnprocessableEntityError``, ...). Fields the server does not
implement (``logprobs``, ``echo``, ``best_of`` > 1, ``n`` > 1, ``suffix``) are a 422 naming the field,
not silently ignored.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Annotated, Literal, Optional, Union

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from lmforge.errors import UsageError
from lmforge.serving.batcher import QueueFull
from lmforge.serving.lm_runner import GenerationRequest
from lmforge.serving.responses import complete, error, sse

Stop = Annotated[str, Field(max_length=256)]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(description="the served model's id (GET /v1/models); any value is accepted")
    prompt: Union[str, Annotated[list[str], Field(min_length=1, max_length=1)]] = Field(
        description="the text to continue (a list holds exactly one)")
    max_tokens: Optional[int] = Field(16, ge=1, description="new tokens at most")
    temperature: Optional[float] = Field(1.0, ge=0.0, le=2.0, description="0 = greedy")
    top_p: Optional[float] = Field(1.0, gt=0.0, le=1.0)
    stop: Union[Stop, Annotated[list[Stop], Field(max_length=4)], None] = None
    seed: Optional[int] = Field(None, ge=0, le=2**63 - 1)
    stream: Optional[bool] = False
    stream_options: Optional[StreamOptions] = None
    n: Optional[int] = Field(1, ge=1, le=1, description="one completion per request")
    best_of: Optional[int] = Field(None, ge=1, le=1)
    echo: Optional[Literal[False]] = Field(False, description="not supported: leave it out or false")
    logprobs: Optional[int] = Field(None, le=0, description="not supported: leave it out")
    suffix: Optional[str] = Field(None, max_length=0, description="not supported: leave it out")
    presence_penalty: Optional[float] = Field(0.0, ge=0.0, le=0.0, description="not supported: 0")
    frequency_penalty: Optional[float] = Field(0.0, ge=0.0, le=0.0, description="not supported: 0")
    user: Optional[str] = None


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    input: Union[str, Annotated[list[str], Field(min_length=1)]]
    encoding_format: Optional[str] = Field("float", pattern="^(float|base64)$")
    dimensions: Optional[int] = Field(None, description="not supported: leave it out (the model's width is used)", le=0)
    user: Optional[str] = None


def add_openai_routes(app: FastAPI, srv) -> None:
    """Register /v1/models, /v1/completions and /v1/embeddings on ``app`` (``srv``: the app's _Server)."""

    @app.get("/v1/models")
    async def models():
        r = srv.state.get("runner")
        if r is None:
            return error(503, None, "model not loaded yet")
        return {"object": "list", "data": [{"id": model_id(r), "object": "model", "created": srv.started,
                                            "owned_by": "lmforge"}]}

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request):
        """A completion in OpenAI's format (``stream``: its server-sent chunks)."""
        if (bad := srv.wrong_model("causal_lm")) is not None:
            return bad
        params = _generation(req, srv.cfg)
        if isinstance(params, JSONResponse):
            return params
        try:
            srv.state["runner"].prompt_ids(params.prompt)
        except UsageError as exc:
            return error(422, "prompt", str(exc))
        try:
            job = srv.state["generations"].submit(params)
        except QueueFull:
            return error(429, None, "too many generations waiting; retry later")
        meta = {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": model_id(srv.state["runner"])}
        if req.stream:
            usage = bool(req.stream_options and req.stream_options.include_usage)
            return StreamingResponse(_chunks(job, meta, usage, srv.cfg.timeout_s), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        done = await complete(job, request, srv.cfg.timeout_s)
        if isinstance(done, JSONResponse):
            return done
        return {**meta, "object": "text_completion",
                "choices": [{"text": done["text"], "index": 0, "logprobs": None,
                             "finish_reason": _finish(done["finish_reason"])}],
                "usage": _usage(done)}

    @app.post("/v1/embeddings")
    async def embeddings(req: EmbeddingsRequest, request: Request):
        """Unit-length vectors in OpenAI's format (float lists, or base64 float32)."""
        texts = [req.input] if isinstance(req.input, str) else list(req.input)
        out = await srv.run(texts, "encoder", request)
        if isinstance(out, JSONResponse):
            return out
        data, tokens = [], 0
        for i, x in enumerate(out):
            v = np.asarray(x["embedding"], dtype=np.float32)
            v = v / max(float(np.linalg.norm(v)), 1e-12)
            vec = base64.b64encode(v.astype("<f4").tobytes()).decode() if req.encoding_format == "base64" \
                else [float(f) for f in v]
            data.append({"object": "embedding", "embedding": vec, "index": i})
            tokens += int(x["tokens"])
        return {"object": "list", "data": data, "model": model_id(srv.state["runner"]),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def model_id(runner) -> str:
    """The served model's id: its folder's name (``best`` → the run's name)."""
    folder = getattr(runner, "folder", None)
    if folder is None:
        return "lmforge"
    name = folder.name
    return folder.parent.parent.name if name in ("best", "pretrain", "onnx") and folder.parent.parent.name else name


def _generation(req: CompletionRequest, cfg) -> Union[GenerationRequest, JSONResponse]:
    prompt = req.prompt if isinstance(req.prompt, str) else req.prompt[0]
    max_tokens = req.max_tokens if req.max_tokens is not None else 16
    if max_tokens > cfg.max_new_tokens:
        return error(422, "max_tokens", f"{max_tokens}; this server allows at most {cfg.max_new_tokens}")
    if len(prompt) > cfg.max_chars:
        return error(422, "prompt", f"{len(prompt)} characters; at most {cfg.max_chars}")
    stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    top_p = req.top_p if req.top_p is not None and req.top_p < 1.0 else None
    temperature = 1.0 if req.temperature is None else req.temperature
    return GenerationRequest(prompt, max_tokens, temperature, None, top_p, stop, req.seed or 0)


def _finish(reason: str) -> str:
    return "length" if reason == "length" else "stop"  # eos and stop strings are both "stop" to OpenAI


def _usage(record: dict) -> dict:
    u = record["usage"]
    return {"prompt_tokens": u["prompt_tokens"], "completion_tokens": u["completion_tokens"],
            "total_tokens": u["prompt_tokens"] + u["completion_tokens"]}


def _chunks(job, meta: dict, include_usage: bool, timeout_s: float):
    """OpenAI's streamed completion: a chunk per text piece, one with the finish reason (and one with
    the usage when asked), then [DONE]."""
    def chunk(text: str, finish: Optional[str]) -> dict:
        return {**meta, "object": "text_completion",
                "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]}

    def done(record: dict) -> list[dict]:
        usage = [{**meta, "object": "text_completion", "choices": [], "usage": _usage(record)}]
        return [chunk("", _finish(record["finish_reason"]))] + (usage if include_usage else [])

    return sse(job, timeout_s, lambda token, text: [chunk(text, None)] if text else [], done)
