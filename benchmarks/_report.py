"""Shared by the benchmarks: the machine's description, the header of a printed result, the
options of the training benchmarks and the run folder's config."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

from .recipes import deep_update, load_recipe, recipe_names, write_recipe

ROOT = Path(__file__).resolve().parents[1]
# Where runs write (models, logs, results); COLORRL_RUNS moves it (the tests use a temporary one).
RUNS = Path(os.environ.get("COLORRL_RUNS") or ROOT / "runs")


def machine() -> str:
    """CPU model, cores, torch version (and GPU when one is used)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} "
    text += "threads"
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def command() -> str:
    """The command line of this run, as ``python -m benchmarks.NAME ...``."""
    script = Path(sys.argv[0]).resolve()
    if script.parent == ROOT / "benchmarks":
        head = ["-m", f"benchmarks.{script.stem}"]
    else:
        head = [sys.argv[0]]
    return "python " + " ".join(shlex.quote(a) for a in head + sys.argv[1:])


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def header(title: str) -> list[str]:
    """The first lines of a printed result: title, machine, command and date."""
    return [f"## {title}", "", f"- machine: {machine()}", f"- command: `{command()}`",
            f"- date: {stamp()}"]


def source_env() -> dict[str, str]:
    """This process's environment with the repository's src/ first on PYTHONPATH, for the
    processes a benchmark starts."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p)
    return env


def run_worker(module: str, flag: str, spec: dict, folder: Path) -> dict:
    """Run ``python -m MODULE FLAG SPEC`` in a fresh process, the ``spec`` written as JSON in
    ``folder``; the JSON object the worker printed last."""
    path = folder / "spec.json"
    path.write_text(json.dumps(spec))
    done = subprocess.run([sys.executable, "-m", module, flag, str(path)], capture_output=True,
                          text=True, env=source_env(), cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{module} {flag} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def steps_value(text: str) -> int | str:
    """``--steps``: a whole number (T) or 'auto' (a number stayed a string, which the settings
    refuse: ``--steps 3`` once stopped every training benchmark)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"give a whole number or auto, not {text!r}") from None


def add_run_arguments(parser, *, minutes: float, quick_help: str) -> None:
    """The options every training benchmark shares: data, recipe (or a config file), budget, T,
    seed, name and --quick."""
    parser.add_argument("--data", type=Path, required=True, help="folder with train/ and val/")
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--recipe", choices=recipe_names(), metavar="NAME",
                       help="a recipe of benchmarks/recipes: " + ", ".join(recipe_names()))
    given.add_argument("--config", type=Path, help="a JSON config file of your own instead")
    parser.add_argument("--minutes", type=float, default=minutes,
                        help=f"training budget (default {minutes:g})")
    parser.add_argument("--steps", type=steps_value, default=None,
                        help="T, or auto (default: the recipe's T, else auto)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=None,
                        help="name of the run (default: the recipe, else the data folder)")
    parser.add_argument("--quick", action="store_true", help=quick_help)


def run_name(args) -> str:
    return args.name or args.recipe or args.data.name


def recipe_config(args) -> dict:
    """The config dict the run starts from: the recipe, or the user's config file."""
    import json

    return load_recipe(args.recipe) if args.recipe else json.loads(args.config.read_text())


def prepare_run(args, folder: Path, *, minutes: float, changes: dict | None = None,
                resume: Path | None = None):
    """Write the run's config (recipe, then ``changes``, budget and seed) to folder/config.json
    and prepare training from it as ``colorrl train --config`` does; print its messages.
    Selection (``train.selection``) is on a share carved from train/: ``setup.val`` is that
    share, ``setup.scored`` the val/ images to report."""
    from napari_colorrl.core.training.setup import TrainingRequest, prepare_training

    config = deep_update(recipe_config(args), changes or {})
    # The checkpoint and the minimum size are chosen on a seeded share of train/, never on
    # val/, which is only scored (setup.scored) after training.
    config = deep_update(config, {"train": {"minutes": minutes, "seed": args.seed,
                                            "selection": "train"}})
    path = write_recipe(config, folder / "config.json")
    settings = {"steps": args.steps} if args.steps is not None else {}
    setup = prepare_training(TrainingRequest(data=args.data, config_file=path,
                                             settings=settings, resume=resume))
    for line in setup.messages:
        print(line)
    return setup


def pick(parser: argparse.ArgumentParser, text: str, known, what: str) -> list[str]:
    """The comma-separated names in ``text``; a parser error names the unknown ones."""
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in names if v not in known]
    if unknown:
        parser.error(f"unknown {what}(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return names
