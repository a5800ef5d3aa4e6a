"""Run the app with uvicorn: in the foreground (``lmforge serve``) or for one smoke request
(``lmforge serve --smoke TEXT``, which starts the server on a free local port, waits for
``/ready``, sends TEXT to the model's endpoint (as the prompt for a decoder), prints the answer
and shuts the server down)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import asdict, replace
from typing import Optional

from lmforge.errors import LmforgeError
from lmforge.serving.app import build_app
from lmforge.serving.config import ServeConfig
from lmforge.serving.runner import ENDPOINTS, load_runner


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_ready(base: str, timeout: float, alive=lambda: True) -> None:
    """Poll ``base/ready`` until it answers 200; a clear error after ``timeout`` s or when
    ``alive()`` turns false (the server process died)."""
    import httpx

    deadline = time.time() + timeout
    while True:
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if not alive():
            raise LmforgeError(f"the server for {base} exited before it was ready")
        if time.time() > deadline:
            raise LmforgeError(f"the server on {base} did not become ready in {timeout} s")
        time.sleep(0.05)


CONFIG_ENV = "LMFORGE_SERVE_CONFIG"  # the config handed to worker processes (JSON)


def serve(cfg: ServeConfig) -> None:
    """Load the model (a bad folder fails here, before the port opens), then serve until SIGINT/SIGTERM
    (uvicorn lets in-flight requests finish). With ``workers`` > 1, uvicorn starts that many
    processes on the one port; each loads its own model with its share of the cores."""
    import uvicorn

    if cfg.workers > 1 and not cfg.threads:
        cfg = replace(cfg, threads=max(1, (os.cpu_count() or 1) // cfg.workers))
    runner = load_runner(cfg)
    print(f"[serve] {runner.kind} model {runner.folder} ({cfg.backend}) on http://{cfg.host}:{cfg.port}"
          + (f", {cfg.workers} workers × {cfg.threads} threads" if cfg.workers > 1 else ""), flush=True)
    if cfg.workers == 1:
        uvicorn.run(build_app(cfg, runner), host=cfg.host, port=cfg.port, log_level="warning")
        return
    del runner  # checked; each worker loads its own
    os.environ[CONFIG_ENV] = json.dumps(asdict(cfg))
    uvicorn.run("lmforge.serving.server:app_from_env", factory=True, host=cfg.host, port=cfg.port,
                workers=cfg.workers, log_level="warning")


def app_from_env():
    """The app of one worker process (``serve`` with ``workers`` > 1 names this factory)."""
    return build_app(ServeConfig(**json.loads(os.environ[CONFIG_ENV])))


def smoke(cfg: ServeConfig, text: str, payload: Optional[dict] = None, timeout: float = 60.0) -> dict:
    """Start, ask once (``text``, or the request body ``payload``), stop; returns the response body."""
    import httpx
    import uvicorn

    runner = load_runner(cfg)
    port = cfg.port or free_port(cfg.host)
    server = uvicorn.Server(uvicorn.Config(build_app(cfg, runner), host=cfg.host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://{cfg.host}:{port}"
    headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
    try:
        wait_ready(base, timeout, thread.is_alive)
        path = ENDPOINTS[runner.kind]
        body = payload or ({"prompt": text, "max_new_tokens": 20} if runner.kind == "causal_lm" else {"texts": [text]})
        r = httpx.post(f"{base}{path}", json=body, headers=headers, timeout=timeout)
        body = r.json()
        print(f"[serve] smoke: POST {path} → {r.status_code} {json.dumps(body)[:500]}", flush=True)
        if r.status_code != 200:
            raise LmforgeError(f"smoke request failed with {r.status_code}: {body}")
        return body
    finally:
        server.should_exit = True
        thread.join(timeout=10)
