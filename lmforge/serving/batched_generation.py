"""Generation requests batched across clients (continuous batching) for torch decoders.

One worker thread owns a running batch of up to ``max_batch`` sequences. Between two decode steps,
waiting requests join — their prompts prefilled together in one left-padded forward pass, then
their KV caches merged into the batch's — and finished or cancelled ones leave. A decode step feeds every running sequence its
last token in one forward pass: the batch's cache is left-padded to its longest sequence, an
attention mask hides the padding, and each row reads its own position, so a row computes what it
would alone. Each request keeps its own sampler (its seed, temperature, top-k/top-p), stop strings
and limits, so its tokens are the ones :class:`~lmforge.serving.generation.Generations` (one
request at a time) gives — greedy outputs are compared token for token in the tests.

Same interface as :class:`~lmforge.serving.generation.Generations`: ``submit(request) -> Job`` with
``("token", id, text)`` events, then ``("done", record)`` or ``("error", exception)``; ``job.cancel``
drops a waiting request and stops a running one before the next step.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F

from lmforge.inference.generate import TextStream, sample_next
from lmforge.models.layers import KVCache
from lmforge.serving.batcher import QueueFull
from lmforge.serving.generation import Job


@dataclass(eq=False)
class _Row:
    """One running request: its sampler, text and counts."""

    job: Job
    req: object  # GenerationRequest
    post: object  # (event...) -> None, onto the request's event loop
    prompt: list[int]
    n: int  # new tokens allowed
    text: TextStream
    gen: torch.Generator
    eos: Optional[int]
    t0: float = field(default_factory=time.perf_counter)
    count: int = 0
    last: int = 0  # the token to feed next


class BatchedGenerations:
    def __init__(self, runner, max_waiting: int, on_tokens=lambda n: None, max_batch: int = 8):
        self.runner, self.max_waiting, self.on_tokens, self.max_batch = runner, max_waiting, on_tokens, max_batch
        self.model = runner.model.eval()
        self.waiting = 0
        self.running = 0
        self.dropped = 0
        self.stopped = 0
        self._pending: deque = deque()
        self._wake = threading.Condition()
        self._closed = False
        self._rows: list[_Row] = []
        self._outbox: list = []  # (event loop, queue, event) posted during this step
        self._cache: Optional[KVCache] = None
        self._mask: Optional[torch.Tensor] = None  # (B, S) 1 = a real cached position
        self._thread = threading.Thread(target=self._work, name="lmforge-generate-batch", daemon=True)
        self._thread.start()

    def submit(self, request) -> Job:
        if self.waiting >= self.max_waiting:
            raise QueueFull
        loop = asyncio.get_running_loop()
        job = Job(asyncio.Queue())

        def post(*event):  # collected, and handed to the event loop once per step (see _flush)
            self._outbox.append((loop, job.events, event))

        with self._wake:
            self.waiting += 1
            self._pending.append((job, request, post))
            self._wake.notify()
        return job

    def shutdown(self) -> None:
        with self._wake:
            self._closed = True
            for job, _, _ in self._pending:
                job.cancel.set()
            for row in self._rows:
                row.job.cancel.set()
            self._wake.notify()

    # -- the worker ------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._rows and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                joining = []
                while self._pending and len(self._rows) + len(joining) < self.max_batch:
                    joining.append(self._pending.popleft())
                    self.waiting -= 1
            if joining:
                self._join(joining)
            self._leave(lambda row: row.job.cancel.is_set(), "cancelled")
            if self._rows:
                self._step()
            self._flush()

    def _flush(self) -> None:
        """Hand this step's events to their event loops: one wake-up per loop, not one per token."""
        out, self._outbox = self._outbox, []
        by_loop: dict = {}
        for loop, q, event in out:
            by_loop.setdefault(loop, []).append((q, event))

        def deliver(items):
            for q, event in items:
                q.put_nowait(event)

        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(deliver, items)
            except RuntimeError:  # the loop is closed: nobody listens
                pass

    @torch.inference_mode()
    def _join(self, joining: list) -> None:
        """Prefill the joining prompts together (left-padded, one forward pass), sample each one's
        first token, and add the rows that go on to the batch."""
        rows = []
        for job, req, post in joining:
            if job.cancel.is_set():  # its client left while it waited
                self.dropped += 1
                continue
            try:
                ids = self.runner.prompt_ids(req.prompt)
            except Exception as exc:  # a prompt that leaves no room (UsageError)
                post("error", exc)
                continue
            self.running += 1
            rows.append(_Row(job, req, post, ids, min(req.max_new_tokens, self.runner.max_length - len(ids)),
                             TextStream(self.runner.tokenizer, ids, req.stop), torch.Generator().manual_seed(req.seed),
                             None if req.ignore_eos else self.runner.special.get("eos")))
        if not rows:
            return
        width = max(len(r.prompt) for r in rows)
        real = torch.tensor([[0] * (width - len(r.prompt)) + [1] * len(r.prompt) for r in rows])  # (G, L)
        ids = torch.tensor([[0] * (width - len(r.prompt)) + r.prompt for r in rows])
        positions = (real.cumsum(1) - 1).clamp(min=0)  # each row's own positions; padding at 0
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        # real keys only, and every position may see itself (a padding query must attend somewhere)
        allowed = causal & (real.bool()[:, None, :] | torch.eye(width, dtype=torch.bool))  # (G, L, L)
        cache = KVCache(self.model.cfg.n_layer)
        logits = self.model.head(self.model.body(ids, allowed[:, None], None, cache, positions))[:, -1].float()
        alive = [i for i, row in enumerate(rows) if self._accept(row, logits[i:i + 1])]
        if alive:
            idx = torch.tensor(alive)
            cache.k, cache.v = [k[idx] for k in cache.k], [v[idx] for v in cache.v]
            self._merge([rows[i] for i in alive], cache, real[idx])

    def _accept(self, row: _Row, logits: torch.Tensor) -> bool:
        """Sample ``row``'s next token from ``logits`` (1, V); emit it; False once the row is finished."""
        req = row.req
        token = int(sample_next(logits, req.temperature, req.top_k, req.top_p, row.gen)[0])
        row.count += 1
        if token == row.eos:
            return self._finish(row, "eos")
        row.post("token", token, row.text.push(token))
        if row.text.stopped:
            return self._finish(row, "stop")
        if row.count >= row.n:
            return self._finish(row, "length")
        row.last = token
        return True

    def _finish(self, row: _Row, reason: str) -> bool:
        if reason == "cancelled":
            self.stopped += 1
        elif reason != "stop":
            rest = row.text.flush()
            if rest:
                row.post("token", -1, rest)
        seconds = time.perf_counter() - row.t0
        self.on_tokens(row.count)
        row.post("done", {"text": row.text.text, "finish_reason": reason,
                          "usage": {"prompt_tokens": len(row.prompt), "completion_tokens": row.count,
                                    "seconds": round(seconds, 4),
                                    "tokens_per_second": round(row.count / seconds, 2) if seconds > 0 else None}})
        self.running -= 1
        return False

    def _merge(self, rows: list[_Row], cache: KVCache, mask: torch.Tensor) -> None:
        """Add prefilled rows (their cache (G, H, L, D) and mask (G, L)) to the batch, left-padding
        the shorter side."""
        if self._cache is None:
            self._rows, self._cache, self._mask = list(rows), cache, mask
            return
        S, L = self._mask.shape[1], mask.shape[1]
        width = max(S, L)
        self._cache.k = [torch.cat([_pad_left(a, width), _pad_left(b, width)]) for a, b in zip(self._cache.k, cache.k)]
        self._cache.v = [torch.cat([_pad_left(a, width), _pad_left(b, width)]) for a, b in zip(self._cache.v, cache.v)]
        self._mask = torch.cat([F.pad(self._mask, (width - S, 0)), F.pad(mask, (width - L, 0))])
        self._rows += rows

    def _leave(self, gone, reason: str) -> None:
        """Drop the rows for which ``gone(row)`` holds (finishing them with ``reason``) from the batch."""
        keep = [i for i, row in enumerate(self._rows) if not gone(row)]
        if len(keep) == len(self._rows):
            return
        for i, row in enumerate(self._rows):
            if i not in keep:
                self._finish(row, reason)
        self._select(keep)

    def _select(self, keep: list[int]) -> None:
        if not keep:
            self._rows, self._cache, self._mask = [], None, None
            return
        idx = torch.tensor(keep)
        mask = self._mask[idx]
        first = int(mask.any(0).long().argmax())  # columns that are padding in every row left go
        self._mask = mask[:, first:]
        self._cache.k = [k[idx][:, :, first:] for k in self._cache.k]
        self._cache.v = [v[idx][:, :, first:] for v in self._cache.v]
        self._rows = [self._rows[i] for i in keep]

    @torch.inference_mode()
    def _step(self) -> None:
        """One decode step for every running row; finished rows leave the batch."""
        rows = self._rows
        mask = torch.cat([self._mask, torch.ones(len(rows), 1, dtype=torch.long)], dim=1)  # (B, S + 1)
        ids = torch.tensor([[row.last] for row in rows])
        if bool(self._mask.all()):  # no padding (one row, or rows of one length): the plain cached step
            h = self.model.body(ids, cache=self._cache)
        else:
            positions = self._mask.sum(1, keepdim=True)  # (B, 1): each row's own next position
            h = self.model.body(ids, mask, None, self._cache, positions)
        logits = self.model.head(h)[:, -1].float()  # (B, V)
        self._mask = mask
        alive = [i for i, row in enumerate(rows) if self._accept(row, logits[i:i + 1])]
        if len(alive) < len(rows):
            self._select(alive)


def _pad_left(x: torch.Tensor, width: int) -> torch.Tensor:
    """(B, H, L, D) → (B, H, width, D), zeros in front."""
    return F.pad(x, (0, 0, width - x.shape[2], 0)) if x.shape[2] < width else x
