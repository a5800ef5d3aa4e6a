"""Generation requests, off the event loop, one at a time, cancellable while they run.

:meth:`Generations.submit` queues a job for a single worker thread and returns it at once. The
worker puts an event on the job's asyncio queue for every token (``("token", id, text)``), then
``("done", record)`` or ``("error", exception)``. Setting ``job.cancel`` (the client left, or its
timeout passed) makes a queued job never start and a running one stop before its next forward
pass. Generation is not batched across requests: each forward pass serves one prompt.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from lmforge.serving.batcher import QueueFull


@dataclass(eq=False)  # jobs are tracked by identity
class Job:
    events: asyncio.Queue
    cancel: threading.Event = field(default_factory=threading.Event)


class Generations:
    def __init__(self, runner, max_waiting: int, on_tokens=lambda n: None):
        self.runner, self.max_waiting, self.on_tokens = runner, max_waiting, on_tokens
        self.waiting = 0  # submitted, not started
        self.running = 0
        self.dropped = 0  # never started: cancelled while waiting
        self.stopped = 0  # stopped while running (a client left or timed out)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="lmforge-generate")
        self._live: set[Job] = set()  # submitted, not finished: cancelled at shutdown

    def submit(self, request) -> Job:
        """Queue ``request`` (a :class:`~lmforge.serving.lm_runner.GenerationRequest`); raises
        :class:`QueueFull` when ``max_waiting`` jobs are already waiting."""
        if self.waiting >= self.max_waiting:
            raise QueueFull
        loop = asyncio.get_running_loop()
        job = Job(asyncio.Queue())
        self.waiting += 1
        self._live.add(job)

        def on_loop(fn, *args):
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # the loop is closed: the server is gone, nobody listens
                pass

        def put(*event):
            on_loop(job.events.put_nowait, event)

        def work():
            on_loop(self._started)
            try:
                if job.cancel.is_set():  # its client left while it waited
                    self.dropped += 1
                    return
                record = self.runner.generate(request, lambda token, text: put("token", token, text), job.cancel.is_set)
                if record["finish_reason"] == "cancelled":
                    self.stopped += 1
                self.on_tokens(record["usage"]["completion_tokens"])
                put("done", record)
            except Exception as exc:  # a bad prompt (UsageError) or a model failure fails this request only
                put("error", exc)
            finally:
                on_loop(self._finished, job)

        self._pool.submit(work)
        return job

    def _started(self) -> None:
        self.waiting -= 1
        self.running += 1

    def _finished(self, job: Job) -> None:
        self.running -= 1
        self._live.discard(job)

    def shutdown(self) -> None:
        """Stop: queued jobs never start, a running one stops before its next forward pass."""
        for job in self._live:
            job.cancel.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
