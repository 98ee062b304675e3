"""Live training curves for the training dock: reward parts, loss and validation SBD.

Adding a point only stores it; the canvas redraws at most once a second: a draw holds the event
loop for tens of milliseconds (more while the training thread competes for the GIL), and training
a small network yields many reports per second.
"""

from __future__ import annotations

import time
from typing import Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QTimer

#: Report field -> (legend, colour) of the reward curves.
REWARD_CURVES = {
    "reward_merge": ("merge", "#e8743b"),
    "reward_split": ("split", "#19a979"),
    "reward_background": ("background", "#945ecf"),
}
LOSS_COLOR = "#ed4a7b"
SBD_COLOR = "#13a4b4"


class TrainingPlot(FigureCanvasQTAgg):
    """Two panels over updates: reward parts (top); loss and validation SBD (bottom)."""

    def __init__(
        self,
        background: str = "#262930",
        foreground: str = "#f0f1f2",
        min_redraw_seconds: float = 1.0,
    ):
        # Fixed margins: a constrained layout would double the cost of every draw.
        self.figure = Figure(figsize=(3.2, 3.0), dpi=90, facecolor=background)
        self.figure.subplots_adjust(left=0.17, right=0.83, top=0.88, bottom=0.13, hspace=0.32)
        super().__init__(self.figure)
        self.min_redraw_seconds = min_redraw_seconds
        self._last_draw = 0.0
        self._pending = QTimer(self)
        self._pending.setSingleShot(True)
        self._pending.timeout.connect(lambda: self.redraw(force=True))
        self.rewards_ax = self.figure.add_subplot(2, 1, 1)
        self.loss_ax = self.figure.add_subplot(2, 1, 2, sharex=self.rewards_ax)
        self.sbd_ax = self.loss_ax.twinx()
        for ax in (self.rewards_ax, self.loss_ax, self.sbd_ax):
            ax.set_facecolor(background)
            ax.tick_params(colors=foreground, labelsize=7)
            for spine in ax.spines.values():
                spine.set_color(foreground)
        self.rewards_ax.set_ylabel("reward parts", color=foreground, fontsize=8)
        self.loss_ax.set_xlabel("update", color=foreground, fontsize=8)
        self.loss_ax.set_ylabel("loss", color=LOSS_COLOR, fontsize=8)
        self.sbd_ax.set_ylabel("val. SBD", color=SBD_COLOR, fontsize=8)
        self.sbd_ax.set_ylim(0.0, 1.0)
        self.updates: list[int] = []
        self.values: dict[str, list[float]] = {key: [] for key in (*REWARD_CURVES, "loss")}
        self.sbd_updates: list[int] = []
        self.sbd_values: list[float] = []
        self.lines = {
            key: self.rewards_ax.plot([], [], color=color, lw=1.0, label=label)[0]
            for key, (label, color) in REWARD_CURVES.items()
        }
        self.lines["loss"] = self.loss_ax.plot([], [], color=LOSS_COLOR, lw=1.0)[0]
        self.sbd_line = self.sbd_ax.plot([], [], color=SBD_COLOR, lw=1.2, marker="o", ms=2.5)[0]
        # Above the panel, outside the axes: a legend inside would cover the curves.
        legend = self.rewards_ax.legend(fontsize=7, loc="lower center", frameon=False, ncol=4,
                                        bbox_to_anchor=(0.5, 1.0), borderaxespad=0.2,
                                        handlelength=1.2, columnspacing=0.8)
        for text in legend.get_texts():
            text.set_color(foreground)
        self.show_validation(False)
        self.setMinimumHeight(220)

    def show_validation(self, visible: bool) -> None:
        """The SBD axis only makes sense when validation data was given."""
        self.sbd_ax.set_visible(visible)

    def clear(self) -> None:
        self.updates.clear()
        self.sbd_updates.clear()
        self.sbd_values.clear()
        for values in self.values.values():
            values.clear()
        self.redraw(force=True)

    def add_report(self, report: Any) -> None:
        """Store one ``TrainingReport``; redraw when the last draw is old enough."""
        self.updates.append(report.update)
        for key, values in self.values.items():
            values.append(float(getattr(report, key)))
        if report.validation is not None:
            self.sbd_updates.append(report.update)
            self.sbd_values.append(float(report.validation["sbd"]))
        self.redraw(force=report.final)

    def redraw(self, force: bool = False) -> None:
        now = time.perf_counter()
        wait = self.min_redraw_seconds - (now - self._last_draw)
        if not force and wait > 0:
            if not self._pending.isActive():  # draw the latest points a little later
                self._pending.start(int(wait * 1000) + 1)
            return
        self._pending.stop()
        self._last_draw = now
        for key, line in self.lines.items():
            line.set_data(self.updates, self.values[key])
        self.sbd_line.set_data(self.sbd_updates, self.sbd_values)
        for ax in (self.rewards_ax, self.loss_ax):
            ax.relim()
            ax.autoscale_view()
        self.draw_idle()
