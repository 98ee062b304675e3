"""The work of one training run of the dock, off the GUI thread and free of Qt: prepare the data
and drive the core trainer (a generator of reports), count the neighbours for the automatic T,
and the texts the dock shows about a run."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from napari_colorrl.widgets import Failure


def training_run(request: Any, out: Path, stop: threading.Event):
    """Worker body (runs in the worker thread): yields the ``TrainingSetup``, then one
    ``TrainingReport`` per update. ``stop`` closes the core generator here, in this thread, which
    writes the checkpoint (superqt's ``quit()`` would leave it to the garbage collector). Errors
    come back as a ``Failure`` value, since superqt drops RuntimeErrors."""
    from napari_colorrl.core.training.setup import prepare_training
    from napari_colorrl.core.training.trainer import train

    try:
        setup = prepare_training(request)
        yield setup
        if stop.is_set():
            return None
        # Stop ends the run after the current update, with the checkpoint written and a final
        # report that says it stopped.
        yield from train(setup.config, setup.train, setup.val, out=out, resume=request.resume,
                         init=request.init, should_stop=stop.is_set)
    except Exception as err:  # noqa: BLE001 - every failure goes to the user
        return Failure(err)
    return None


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def finished_text(history: list) -> str:
    """The progress bar's text once a run has ended."""
    if not history:
        return "idle"
    last = history[-1]
    if last.final and not last.stopped:
        return f"done: {last.update} updates"
    return f"stopped at update {last.update} ({100 * last.progress:.0f}% of the budget)"


def auto_steps_run(count: int, labels: list, config: Any) -> tuple[int, str, str | None]:
    """The automatic T of these label maps (in a thread): (count, label text, problem)."""
    from napari_colorrl.core.method.steps import auto_steps
    from napari_colorrl.core.runtime import MemoryCheckError, check_setup_memory

    try:
        check_setup_memory(config, [np.shape(lab) for lab in labels], 1, "cpu")
        steps, neighbours = auto_steps(labels, config)
    except (ValueError, MemoryCheckError) as err:
        return count, "", str(err)
    return count, f"auto: T = {steps} (up to {neighbours} neighbours)", None
