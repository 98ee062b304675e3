"""Where a training run writes its checkpoints, checked before any work: the output and its best
model (``best_path``) never replace a folder, an image or another run's files; a fresh name for
the dock; the disk space a run needs."""

from __future__ import annotations

from pathlib import Path

from ..config import ColorRLConfig
from ..data.files import IMAGE_SUFFIXES
from .checkpoint_checks import weight_bytes


def best_path(out: str | Path) -> Path:
    """Where the best model by validation of the run writing ``out`` goes.

    The rule: ``.best`` is inserted before the last suffix (``run.pt`` -> ``run.best.pt``,
    ``run.ckpt`` -> ``run.best.ckpt``, ``run`` -> ``run.best``). It is one-to-one, so two outputs
    never share a best model, and the best model is never the output itself.
    """
    out = Path(out)
    return out.with_name(f"{out.stem}.best{out.suffix}" if out.suffix else f"{out.name}.best")


def check_checkpoint_output(
    out: str | Path, resume: str | Path | None = None, overwrite: bool = False
) -> Path:
    """ValueError when training to ``out`` would replace something it should not.

    Refused: a folder; an image file name; an existing file (or its best model) that is not the
    ``resume`` checkpoint, unless ``overwrite``. Returns ``out``. Nothing is written.
    """
    out = Path(out).expanduser()
    if out.is_dir():
        raise ValueError(
            f"--out {out} is a folder; give a checkpoint file name such as {out / 'colorrl.pt'}."
        )
    if out.suffix.lower() in IMAGE_SUFFIXES:
        raise ValueError(
            f"--out {out} has an image file name; a checkpoint is not an image: name it *.pt "
            f"(e.g. {out.with_suffix('.pt').name})."
        )
    same = resume is not None and _same_file(out, Path(resume))
    if overwrite or same:
        return out
    for path, what in ((out, "checkpoint"), (best_path(out), "best model")):
        if path.is_dir():
            raise ValueError(f"The {what} {path} of --out {out} is a folder; choose another --out.")
        if path.exists():
            raise ValueError(
                f"{path} already exists (the {what} of --out {out}); use --resume {out} to "
                f"continue that run, another --out for a new one, or --overwrite to replace it."
            )
    return out


def fresh_output_path(folder: str | Path, stem: str = "colorrl") -> Path:
    """A checkpoint path in ``folder`` that exists neither as a file nor as a best model yet:
    ``STEM-YYYYmmdd-HHMMSS.pt``, with ``-2``, ``-3``, ... added when taken."""
    import time

    folder = Path(folder).expanduser()
    base = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    for n in range(1, 10_000):
        path = folder / (f"{base}.pt" if n == 1 else f"{base}-{n}.pt")
        if not path.exists() and not best_path(path).exists():
            return path
    raise ValueError(f"No free checkpoint name in {folder}; choose another folder.")


def checkpoint_bytes(config: ColorRLConfig) -> int:
    """Rough size of one training checkpoint of ``config``: float32 weights and Adam's moments
    (three copies, four with amsgrad), plus 1 MiB of the rest."""
    copies = 3 + int(bool(config.train.amsgrad))
    return copies * weight_bytes(config) + 1024**2


def training_disk_bytes(config: ColorRLConfig, validation: bool) -> int:
    """Disk space a training run needs for its outputs: the checkpoint twice (an atomic save
    writes the new file before the old one is removed) and, with validation data, the best
    model (a checkpoint too) twice."""
    best = 2 * checkpoint_bytes(config) if validation else 0
    return 2 * checkpoint_bytes(config) + best


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False
