"""Models shipped inside the package, usable by name (``--model nuclei-2d``)."""

from __future__ import annotations

from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parent / "weights"

#: name -> file name inside ``core/model/weights``.
BUNDLED_MODELS: dict[str, str] = {"nuclei-2d": "nuclei-2d.pt"}


def available_models() -> list[str]:
    """Names of bundled models whose files are present."""
    return [name for name, file in BUNDLED_MODELS.items() if (MODEL_DIR / file).is_file()]


def resolve_model_path(model: str | Path) -> Path:
    """A bundled model name or a path to a checkpoint file -> the file's path."""
    text = str(model)
    if text in BUNDLED_MODELS:
        path = MODEL_DIR / BUNDLED_MODELS[text]
        if not path.is_file():
            raise FileNotFoundError(
                f"The bundled model {text!r} is not part of this installation; "
                f"give the path of a checkpoint file instead."
            )
        return path
    path = Path(model).expanduser()
    if not path.exists():
        names = ", ".join(available_models()) or "none installed"
        raise FileNotFoundError(
            f"Model {text!r} not found: give the path of a checkpoint written by `colorrl train` "
            f"or a bundled model name ({names})."
        )
    return path
