"""Closing napari while the training dock runs: ask, then stop, save and let it close.

The dock installs a ``CloseGuard`` on napari's main window when training starts. On the
window's Close event, while training runs, the user is asked (a ``QMessageBox`` question):
"Yes" stops training after the current update, waits for the core to write the checkpoint and
lets napari close; "Cancel" keeps napari open and training going.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QEvent, QEventLoop, QObject, QTimer
from qtpy.QtWidgets import QMessageBox

QUESTION = "Training is still running. Stop it, save a checkpoint and close napari?"


class CloseGuard(QObject):
    """Event filter on napari's main window for one training dock."""

    def __init__(self, dock: Any) -> None:
        super().__init__(dock)
        self.dock = dock

    def eventFilter(self, watched: Any, event: Any) -> bool:  # noqa: N802 - Qt's name
        if event.type() != QEvent.Type.Close or not self.dock.running:
            return False
        answer = QMessageBox.question(
            self.dock, "ColorRL training is running", QUESTION,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Yes)
        if answer != QMessageBox.StandardButton.Yes:
            event.ignore()
            return True  # napari stays open, training goes on
        stop_and_wait(self.dock)
        return False


def watch_main_window(dock: Any) -> CloseGuard | None:
    """Install a ``CloseGuard`` for ``dock`` on the window that holds it: the top of its parent
    chain (napari's main window, also for a floating dock). Once per dock."""
    window = dock
    while window.parentWidget() is not None:
        window = window.parentWidget()
    if window is dock or getattr(dock, "_close_guard", None) is not None:
        return None
    dock._close_guard = CloseGuard(dock)  # a child of the dock: dropped with it
    window.installEventFilter(dock._close_guard)
    return dock._close_guard


def stop_and_wait(dock: Any, timeout_s: float = 600.0) -> bool:
    """Stop the dock's training and wait, with events flowing, until the worker has written the
    checkpoint and ended; False when it still runs after ``timeout_s``."""
    worker = dock.worker
    if not dock.running or worker is None:
        return True
    dock.stop()
    dock.status.setText("Stopping: saving the checkpoint…")
    loop = QEventLoop()
    worker.finished.connect(loop.quit)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    if dock.running:
        loop.exec()
    return not dock.running
