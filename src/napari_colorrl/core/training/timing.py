"""Where an update's time goes: total seconds and the seconds spent in the rewards.

Kept out of the algorithm (``rollout.py``): ``run_update`` opens an :class:`UpdateClock`, the
rollout times its reward computation with the clock's :class:`SectionTimer`, and the clock's
``stop`` gives both after one device sync.
"""

from __future__ import annotations

import time

import torch


class SectionTimer:
    """Seconds spent inside ``with timer:`` blocks, without a sync inside the step loop.

    On a CUDA device each block is a pair of timing events read once at the end (after the
    update's final sync); elsewhere ``time.perf_counter`` around the (synchronous) work.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.marks: list[tuple[object, object]] = []
        self._start: object = None

    def _now(self) -> object:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record(torch.cuda.current_stream(self.device))
            return event
        return time.perf_counter()

    def __enter__(self) -> SectionTimer:
        self._start = self._now()
        return self

    def __exit__(self, *_: object) -> None:
        self.marks.append((self._start, self._now()))

    def seconds(self) -> float:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            return sum(a.elapsed_time(b) for a, b in self.marks) / 1000.0  # type: ignore[attr-defined]
        return float(sum(b - a for a, b in self.marks))  # type: ignore[operator]


class UpdateClock:
    """Wall time of one update, and the share of it in the rewards (``self.rewards``)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.rewards = SectionTimer(device)
        self.start = time.perf_counter()

    def stop(self) -> tuple[float, float]:
        """(seconds of the update, seconds of its rewards), after the device finished."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - self.start
        return seconds, min(self.rewards.seconds(), seconds)
