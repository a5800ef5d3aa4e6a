"""Dynamic batching: concurrent requests' texts are gathered into one forward pass.

Each request puts its texts on an asyncio queue as one item and awaits a future. One worker
takes everything that queued while the previous batch ran, then waits up to ``max_wait_ms`` for
more (until ``max_batch_size`` texts), runs the model in a worker thread (the event loop stays free), and resolves each
request's future with its slice of the results. A request whose client went away or timed out
has its future cancelled; the worker skips cancelled items, so their work is never done.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable


class QueueFull(Exception):
    pass


@dataclass
class _Item:
    texts: list[str]
    future: asyncio.Future
    queued_at: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(self, run: Callable[[list[str]], list[dict]], max_batch_size: int, max_wait_ms: float, max_queue: int,
                 on_batch: Callable[[int], None] = lambda n: None):
        self.run, self.max_batch, self.max_wait = run, max_batch_size, max_wait_ms / 1000
        self.max_queue, self.on_batch = max_queue, on_batch
        self.queue: asyncio.Queue[_Item] = asyncio.Queue()
        # one thread for every model call: torch and OpenMP keep a thread team per calling thread,
        # so calls spread over the default executor's threads would oversubscribe the cores
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="lmforge-batch")
        self.queued_texts = 0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def submit(self, texts: list[str]) -> list[dict]:
        """Results for ``texts`` (in order); raises :class:`QueueFull` when too much is waiting."""
        if self.queued_texts + len(texts) > self.max_queue:
            raise QueueFull
        item = _Item(texts, asyncio.get_running_loop().create_future())
        self.queued_texts += len(texts)
        await self.queue.put(item)
        return await item.future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            n = len(items[0].texts)
            while n < self.max_batch and not self.queue.empty():  # what queued while the last batch ran
                items.append(self.queue.get_nowait())
                n += len(items[-1].texts)
            deadline = loop.time() + self.max_wait
            while n < self.max_batch:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    nxt = await asyncio.wait_for(self.queue.get(), left)
                except asyncio.TimeoutError:
                    break
                items.append(nxt)
                n += len(nxt.texts)
            for it in items:
                self.queued_texts -= len(it.texts)
            live = [it for it in items if not it.future.done()]  # cancelled: client gone or timed out
            if not live:
                continue
            texts = [t for it in live for t in it.texts]
            self.on_batch(len(texts))
            try:
                results = await loop.run_in_executor(self._pool, self.run, texts)
            except Exception as exc:  # a model failure fails these requests, not the server
                for it in live:
                    if not it.future.done():
                        it.future.set_exception(exc)
                continue
            pos = 0
            for it in live:
                if not it.future.done():
                    it.future.set_result(results[pos:pos + len(it.texts)])
                pos += len(it.texts)
