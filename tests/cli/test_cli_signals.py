"""Every stop saves: Ctrl-C (SIGINT) and SIGTERM sent to real `colorrl train`, `colorrl demo`
and torchrun processes; the checkpoint they say they wrote exists and loads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import tifffile

from conftest import free_ports, tiny_config, tiny_samples
from napari_colorrl.core.model.checkpoint import load_checkpoint
from napari_colorrl.core.training import trainer as trainer_module
from napari_colorrl.core.training.stopping import StopSignals
from napari_colorrl.core.training.trainer import train

SRC = Path(__file__).resolve().parents[2] / "src"


def _env() -> dict:
    path = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "DISPLAY"):
        env.pop(name, None)
    return env


def _dataset(root: Path) -> Path:
    for sub in ("images", "masks"):
        (root / "train" / sub).mkdir(parents=True)
    for sample in tiny_samples(2):
        tifffile.imwrite(root / "train" / "images" / f"{sample.name}.tif", sample.image)
        tifffile.imwrite(root / "train" / "masks" / f"{sample.name}.tif", sample.labels)
    return root


class _Process:
    """A child process whose output is collected by threads (no pipe ever fills up)."""

    def __init__(self, command: list[str], cwd: Path) -> None:
        self.process = subprocess.Popen(command, env=_env(), cwd=cwd, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [threading.Thread(target=self._read, args=(s, b), daemon=True)
                         for s, b in ((self.process.stdout, self.out),
                                      (self.process.stderr, self.err))]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _read(stream, buffer) -> None:
        for line in iter(stream.readline, ""):
            buffer.append(line)

    def text(self) -> str:
        return "".join(self.out) + "\n--- stderr ---\n" + "".join(self.err)[-3000:]

    def wait_for(self, predicate, seconds: float = 240) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "exited early:\n" + self.text()
            if predicate():
                return
            time.sleep(0.1)
        raise AssertionError("timed out waiting:\n" + self.text())

    def finish(self, seconds: float = 120) -> int:
        try:
            code = self.process.wait(seconds)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        for thread in self._threads:
            thread.join(5)
        return code


def _log_lines(log: Path) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("sig, code, name", [(signal.SIGINT, 130, "Ctrl-C"),
                                             (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_to_colorrl_train_writes_the_checkpoint(tmp_path, sig, code, name):
    data = _dataset(tmp_path / "data")
    config = tmp_path / "c.json"
    # checkpoint_every far away: the only checkpoint is the one the stop writes.
    config.write_text(tiny_config(train={"checkpoint_every": 10_000}).to_json())
    out, log = tmp_path / "run" / "m.pt", tmp_path / "log.jsonl"
    child = _Process([sys.executable, "-m", "napari_colorrl", "train", "--data", str(data),
                      "--config", str(config), "--episodes", "1000000", "--threads", "1",
                      "--out", str(out), "--log", str(log)], tmp_path)
    child.wait_for(lambda: len(_log_lines(log)) >= 2)
    assert not out.exists()
    child.process.send_signal(sig)
    assert child.finish() == code, child.text()
    stdout = "".join(child.out)
    assert f"stopped by {name} at update" in stdout and f"checkpoint written to {out}" in stdout
    last = _log_lines(log)[-1]
    assert last["stopped"] and last["final"] and last["checkpoint"] == str(out)
    saved = load_checkpoint(out)
    assert saved.step == last["update"] and saved.episodes == last["episodes"]
    assert "Traceback" not in child.text()


def test_sigterm_to_colorrl_demo_keeps_the_checkpoint_and_stops(tmp_path):
    child = _Process([sys.executable, "-m", "napari_colorrl", "demo", "--headless", "--minutes",
                      "30", "--device", "cpu", "--out", str(tmp_path / "demo")], tmp_path)
    child.wait_for(lambda: "update " in "".join(child.err), seconds=300)
    child.process.send_signal(signal.SIGTERM)
    assert child.finish() == 143, child.text()
    stdout = "".join(child.out)
    assert "stopped by SIGTERM at update" in stdout
    assert f"checkpoint written to {tmp_path / 'demo' / 'demo.pt'}" in stdout
    assert load_checkpoint(tmp_path / "demo" / "demo.pt").step >= 1
    assert not (tmp_path / "demo" / "demo.png").exists()  # the demo stopped, as asked


def test_sigterm_to_torchrun_stops_every_worker_after_one_update(tmp_path):
    data = _dataset(tmp_path / "data")
    config = tmp_path / "c.json"
    config.write_text(tiny_config(train={"checkpoint_every": 10_000, "batch_size": 1}).to_json())
    out, log = tmp_path / "m.pt", tmp_path / "log.jsonl"
    child = _Process([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
                      "--nproc-per-node", "2", "--rdzv-backend", "c10d",
                      "--rdzv-endpoint", f"127.0.0.1:{free_ports(1)[0]}",
                      "-m", "napari_colorrl", "train", "--data", str(data), "--config",
                      str(config), "--episodes", "1000000", "--out", str(out),
                      "--log-file", str(log)], tmp_path)
    child.wait_for(lambda: len(_log_lines(log)) >= 2, seconds=300)
    child.process.send_signal(signal.SIGTERM)  # to torchrun, which passes it to its workers
    child.finish()
    stdout = "".join(child.out)
    assert "stopped by SIGTERM at update" in stdout, child.text()
    assert stdout.count("checkpoint written to") == 1  # rank 0 only
    last = _log_lines(log)[-1]
    assert last["stopped"]
    assert load_checkpoint(out).step == last["update"]


def test_an_interrupt_inside_an_update_still_writes_the_checkpoint(tmp_path, monkeypatch):
    """The bug: KeyboardInterrupt raised in run_update (not at a yield) skipped the save."""
    real, calls = trainer_module.run_update, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "run_update", interrupted)
    out = tmp_path / "m.pt"
    config = tiny_config(train={"episodes": 100, "checkpoint_every": 10_000})
    generator = train(config, tiny_samples(2), out=out)
    with pytest.raises(KeyboardInterrupt):
        for _ in generator:
            pass
    assert load_checkpoint(out).step == 2  # the two updates that ended


def test_should_stop_ends_the_run_after_the_update_with_a_final_report(tmp_path):
    requests = iter([False, False, True])
    reports = list(train(tiny_config(train={"episodes": 100, "checkpoint_every": 10_000}),
                         tiny_samples(2), tiny_samples(2, 1), out=tmp_path / "m.pt",
                         should_stop=lambda: next(requests)))
    assert [r.update for r in reports] == [1, 2, 3]
    assert reports[-1].stopped and reports[-1].final and reports[-1].checkpoint
    assert not any(r.stopped for r in reports[:-1])
    assert load_checkpoint(tmp_path / "m.pt").step == 3


def test_stop_signals_first_requests_then_a_later_one_interrupts():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignals(repeat_after=0.2, announce=False) as stop:
        assert not stop.requested()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested() and stop.exit_code == 143 and stop.name == "SIGTERM"
        os.kill(os.getpid(), signal.SIGINT)  # at once: the same stop, delivered twice
        time.sleep(0.3)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
    assert signal.getsignal(signal.SIGTERM) is before
