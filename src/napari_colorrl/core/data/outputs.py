"""Where ``colorrl predict`` writes, checked before any work: one label file per input (and
the step and color maps when asked), never over an input, a ground-truth file or a file it did
not write itself (``written_by_predict`` knows its own files by their TIFF tag)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .files import (
    _MAX_LISTED,
    LABEL_FILE_SUFFIXES,
    PREDICTION_TAG,
    TIFF_SUFFIXES,
    ZARR_SUFFIXES,
    _label_stem,
    is_image_file,
)

#: Folder names that hold ground truth (compared case-insensitively).
GROUND_TRUTH_FOLDERS = ("masks", "mask", "labels", "label", "gt", "ground_truth", "groundtruth",
                        "annotations")


@dataclass
class PlannedOutput:
    """Where ``predict`` writes the results of one input image."""

    source: Path
    labels: Path
    steps: Path | None = None
    colors: Path | None = None

    @property
    def paths(self) -> list[Path]:
        return [p for p in (self.labels, self.steps, self.colors) if p is not None]


def plan_outputs(
    inputs: Iterable[str | Path], folder: str | Path, save_steps: bool = False,
    overwrite: bool = False,
) -> list[PlannedOutput]:
    """The files ``predict`` will write for ``inputs`` into ``folder``, checked before any work.

    ``STEM.tif`` per input (and ``STEM_steps.tif``, ``STEM_colors.tif`` with ``save_steps``).
    Raises ValueError, listing every case, when an output would be an input file, when two
    outputs share a name (compared case-insensitively, so it holds on every filesystem), when
    ``folder`` is a ground-truth folder (named like ``masks``/``labels``/``gt``, or the label
    folder next to an ``images`` input folder, holding files ``predict`` did not write), or when
    an output exists: without ``overwrite`` always, with it unless ``predict`` wrote that file.
    """
    inputs = [Path(p) for p in inputs]
    folder = Path(folder).expanduser()
    if folder.suffix.lower() in LABEL_FILE_SUFFIXES:
        return [_plan_file(inputs, folder, save_steps, overwrite)]
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--output {folder} is a file; give a folder for the label files.")
    plans = [
        PlannedOutput(
            source=src, labels=folder / f"{src.stem}.tif",
            steps=folder / f"{src.stem}_steps.tif" if save_steps else None,
            colors=folder / f"{src.stem}_colors.tif" if save_steps else None,
        )
        for src in inputs
    ]
    out_dir = folder.resolve()
    # Every input file, keyed like an output in its folder: (resolved folder, casefolded name).
    input_keys = {(p.parent.resolve(), p.name.casefold()): p for p in inputs}
    owners: dict[str, list[str]] = {}
    hits_input: list[str] = []
    for plan in plans:
        for path in plan.paths:
            owners.setdefault(path.name.casefold(), []).append(
                f"{plan.source.name}" + ("" if path == plan.labels else
                                         f" ({path.stem.rsplit('_', 1)[-1]})"))
            source = input_keys.get((out_dir, path.name.casefold()))
            if source is not None:
                hits_input.append(f"{path.name} would replace the input {source.name}")
    clashes = [f"{name} <- {' and '.join(who)}" for name, who in owners.items() if len(who) > 1]
    if hits_input or clashes:
        problems = "; ".join([*hits_input, *(f"two outputs named {c}" for c in clashes)])
        raise ValueError(
            f"Predicting into {folder} would lose results or inputs: {problems}. Write to "
            f"another --output folder, or rename the inputs so that their stems differ."
        )
    existing = {p.name.casefold(): p for p in folder.iterdir()} if folder.is_dir() else {}
    _check_not_ground_truth(folder, inputs, existing)
    foreign = []
    for plan in plans:
        for path in plan.paths:
            old = existing.get(path.name.casefold())
            if old is None:
                continue
            if old.is_dir():
                foreign.append(f"{old.name} (a folder)")
            elif not overwrite or not written_by_predict(old):
                foreign.append(old.name)
    if foreign:
        shown = ", ".join(foreign[:_MAX_LISTED])
        more = f" and {len(foreign) - _MAX_LISTED} more" if len(foreign) > _MAX_LISTED else ""
        if overwrite:
            raise ValueError(
                f"--overwrite only replaces files colorrl predict wrote, but {folder} holds "
                f"{shown}{more} from elsewhere (ground truth?); choose another --output folder."
            )
        raise ValueError(
            f"{folder} already holds {shown}{more}; choose another --output folder, or pass "
            f"--overwrite to replace earlier predictions."
        )
    return plans


def _plan_file(inputs: list[Path], out: Path, save_steps: bool, overwrite: bool
               ) -> PlannedOutput:
    """The outputs of one input written to the label file ``out`` (``NAME.tif`` or
    ``NAME.zarr``; with ``save_steps`` also ``NAME_steps`` and ``NAME_colors`` beside it)."""
    if len(inputs) != 1:
        raise ValueError(
            f"--output {out} is one label file, but {len(inputs)} images were given; give a "
            f"folder as --output for several images (one label TIFF each).")
    source = inputs[0]
    suffix = out.suffix
    plan = PlannedOutput(
        source=source, labels=out,
        steps=out.with_name(f"{out.stem}_steps{suffix}") if save_steps else None,
        colors=out.with_name(f"{out.stem}_colors{suffix}") if save_steps else None)
    problems = []
    for path in plan.paths:
        if _same_path(path, source):
            problems.append(f"{path.name} would replace the input {source.name}")
        elif path.exists() and not (overwrite and written_by_predict(path)):
            problems.append(f"{path} already exists")
    if problems:
        fix = ("--overwrite only replaces files colorrl predict wrote; choose another --output"
               if overwrite else "choose another --output, or pass --overwrite to replace an "
               "earlier prediction")
        raise ValueError(f"Predicting to {out} would lose results or inputs: "
                         f"{'; '.join(problems)}; {fix}.")
    return plan


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def written_by_predict(path: str | Path) -> bool:
    """True for a TIFF (or a zarr array) that ``colorrl predict`` wrote: its Software tag (its
    ``software`` attribute) is ``PREDICTION_TAG``."""
    import tifffile

    path = Path(path)
    if path.is_dir() and path.suffix.lower() in ZARR_SUFFIXES:
        try:
            import zarr

            return zarr.open(str(path), mode="r").attrs.get("software") == PREDICTION_TAG
        except Exception:  # noqa: BLE001 - anything unreadable is not ours
            return False
    if not path.is_file() or path.suffix.lower() not in TIFF_SUFFIXES:
        return False
    try:
        with tifffile.TiffFile(path) as tif:
            return bool(tif.pages) and tif.pages[0].software == PREDICTION_TAG
    except Exception:  # noqa: BLE001 - anything unreadable is not ours
        return False


def _check_not_ground_truth(folder: Path, inputs: list[Path], existing: dict[str, Path]) -> None:
    """ValueError when ``folder`` holds ground truth: image files ``predict`` did not write (and
    that are not the inputs) in a folder named like ``masks``, or named like the inputs."""
    own_inputs = {p.resolve() for p in inputs}
    foreign = [p for p in existing.values()
               if is_image_file(p) and p.resolve() not in own_inputs and not written_by_predict(p)]
    if not foreign:
        return
    stems = {p.stem.casefold() for p in inputs}
    matching = [p for p in foreign if _label_stem(p).casefold() in stems]
    named = folder.name.casefold() in GROUND_TRUTH_FOLDERS
    if named or matching:
        why = (f"it is named {folder.name!r}" if named else
               f"it holds label files named like the inputs, e.g. {matching[0].name}")
        raise ValueError(
            f"--output {folder} looks like a ground-truth folder ({why}, and {len(foreign)} "
            f"file(s) in it were not written by colorrl predict); write predictions to a new "
            f"folder."
        )


