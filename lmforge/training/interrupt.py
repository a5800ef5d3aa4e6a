"""Graceful stop on SIGINT / SIGTERM: the first signal asks the loop to stop at the next step
boundary (it then writes a checkpoint and its summary); a second one interrupts at once."""

from __future__ import annotations

import signal
import threading


class StopRequest:
    """``with StopRequest() as stop: ... if stop.requested: ...``; handlers restored on exit."""

    def __init__(self):
        self.requested = False
        self.signal_name = None
        self._old = {}

    def _handle(self, signum, frame):
        if self.requested:  # second signal: stop now
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        print(f"\n[lmforge] {self.signal_name}: stopping after this step (again to abort now)", flush=True)

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
