"""Stopping a training run from outside: Ctrl-C (SIGINT) and SIGTERM keep the checkpoint.

A signal never lands in the middle of an update. ``StopSignals`` turns the first SIGINT or
SIGTERM into a request that ``trainer.train`` reads between two updates (``should_stop``): the
current update finishes, the checkpoint is written and the generator ends with a final report
(``stopped=True``). Under torchrun all workers agree on the stop (one all-reduce), so they end
after the same update. A second signal, at least ``repeat_after`` seconds after the first,
stops at once: it raises KeyboardInterrupt, and the trainer still writes the weights it has.
(Ctrl-C under torchrun reaches each worker twice within milliseconds, once from the terminal
and once forwarded by torchrun; the delay keeps that from counting as a second signal.)
"""

from __future__ import annotations

import signal
import sys
import threading
import time

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Context manager: while active, SIGINT and SIGTERM request a stop instead of killing.

    Only the main thread can install handlers; elsewhere (a napari worker thread) this does
    nothing and ``requested`` stays False. ``signum``: the first signal received, or None.
    """

    def __init__(self, repeat_after: float = 2.0, announce: bool = True) -> None:
        self.repeat_after = repeat_after
        self.announce = announce
        self.signum: int | None = None
        self._first_at = 0.0
        self._previous: dict[int, object] = {}

    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        """The shell's code for death by this signal: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + int(self.signum or signal.SIGINT)

    @property
    def name(self) -> str:
        return "Ctrl-C" if self.signum == signal.SIGINT else signal.Signals(self.signum).name

    def _handle(self, signum, frame) -> None:
        now = time.monotonic()
        if self.signum is None:
            self.signum, self._first_at = signum, now
            if self.announce:
                again = "Ctrl-C" if signum == signal.SIGINT else "the signal"
                print(f"\n{self.name}: stopping after the current update and writing the "
                      f"checkpoint (send {again} again to stop at once)", file=sys.stderr,
                      flush=True)
            return
        if now - self._first_at >= self.repeat_after:
            raise KeyboardInterrupt

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
