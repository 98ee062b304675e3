"""The napari docks: thin Qt front ends of :mod:`napari_colorrl.core`.

``_training.TrainingWidget`` and ``_segmentation.SegmentationWidget`` are the two npe2 widget
contributions (Plugins > napari-colorrl). Importing this package is cheap (no Qt, no torch): it
holds only what the docks share, the registry of checkpoints trained in this session and the way
a thread worker hands back a failure.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path

from psygnal.containers import EventedList

#: Checkpoints written by the training dock in this session, oldest first. The segmentation dock
#: listens to it and offers the newest one first.
trained_checkpoints: EventedList[str] = EventedList()


def register_checkpoint(path: str | Path) -> None:
    """Make ``path`` the newest trained checkpoint (no event when it already is)."""
    path = str(path)
    if len(trained_checkpoints) and trained_checkpoints[-1] == path:
        return
    if path in trained_checkpoints:
        trained_checkpoints.remove(path)
    trained_checkpoints.append(path)


@dataclass(frozen=True)
class Failure:
    """What a worker returns instead of raising.

    superqt treats a ``RuntimeError`` escaping a worker as "the worker was deleted" and drops it
    silently; ``TrainingError`` and CUDA out-of-memory errors are RuntimeErrors, so the workers
    catch everything and return this instead, and the dock shows ``message``.
    """

    error: BaseException

    @property
    def message(self) -> str:
        return describe_error(self.error)


def describe_error(error: BaseException) -> str:
    """A message for the user: what went wrong and, where known, what to do."""
    from napari_colorrl.core.runtime import MemoryCheckError

    text = str(error) or type(error).__name__
    lowered = text.lower()
    if isinstance(error, (MemoryCheckError, PermissionError)):
        return text  # the core's own message already says what to do
    if isinstance(error, MemoryError) or "out of memory" in lowered:
        return (
            f"Out of memory ({text.splitlines()[0][:200]}). Lower the batch size or the input "
            f"size, pick a smaller network, or use the CPU."
        )
    if isinstance(error, (ValueError, FileNotFoundError)):
        return text
    return f"{type(error).__name__}: {text}"


def relay_warnings(worker, prefix: str) -> None:
    """Show the warnings a worker's thread raises (e.g. "the image holds NaN values") as napari
    notifications. (napari means to relay them itself, but its mixin's ``__init__`` is not
    reached through the Qt base classes, so they would be dropped.)"""

    def show(args: tuple) -> None:
        from napari.utils.notifications import show_warning

        show_warning(f"{prefix}: {args[0]}")

    worker.warned.connect(show)


#: The training docks alive in this session (``training_dock_of`` finds the one of a viewer).
training_docks: weakref.WeakSet = weakref.WeakSet()


def training_dock_of(viewer):
    """The training dock already open in ``viewer`` (made from the plugin menu or by code, as
    ``colorrl demo`` does), or None."""
    for dock in list(training_docks):
        try:
            if dock.viewer is viewer and dock.parent() is not None:
                return dock
        except RuntimeError:  # its Qt side is gone
            continue
    return None


def show_dock(widget) -> None:
    """Bring the (tabbed) dock holding ``widget`` to the front."""
    from qtpy.QtWidgets import QDockWidget

    parent = widget.parent()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parent()
    if parent is not None:
        parent.show()
        parent.raise_()


__all__ = ["Failure", "describe_error", "register_checkpoint", "relay_warnings", "show_dock",
           "trained_checkpoints", "training_dock_of", "training_docks"]
