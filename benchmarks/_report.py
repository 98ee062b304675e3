"""Shared by the benchmark scripts: the machine's description and docs/benchmarks.md sections."""

from __future__ import annotations

import os
import platform
import re
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
SHARED_DATA = ROOT.parent / "shared" / "data"

HEADER = """# Benchmarks

Every figure on this page was printed by a script in `benchmarks/`; each section names the
machine, the command and the date of its latest run. Re-run the command to refresh a section.
"""


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
    """The command line of this run (a --note and its text are left out: the section has it)."""
    script = Path(sys.argv[0])
    args = [script.relative_to(ROOT).as_posix() if script.is_absolute()
            and ROOT in script.parents else sys.argv[0]]
    rest = iter(sys.argv[1:])
    for arg in rest:
        if arg == "--note":
            next(rest, None)
        elif not arg.startswith("--note="):
            args.append(arg)
    return "python " + " ".join(shlex.quote(a) for a in args)


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def write_section(key: str, body: str, doc: Path = DOC) -> None:
    """Replace (or append) the section marked ``key`` in docs/benchmarks.md."""
    begin, end = f"<!-- begin {key} -->", f"<!-- end {key} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    text = doc.read_text() if doc.exists() else HEADER
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
    print(f"updated section {key!r} of {doc}")


def add_run_arguments(parser, *, minutes: float, config_help: str, quick_help: str) -> None:
    """The options every training benchmark shares: data, config, budget, T, seed, name,
    --quick and --no-doc."""
    parser.add_argument("--data", type=Path, required=True, help="folder with train/ and val/")
    parser.add_argument("--config", type=Path, required=True, help=config_help)
    parser.add_argument("--minutes", type=float, default=minutes,
                        help=f"training budget (default {minutes:g})")
    parser.add_argument("--steps", default="auto", help="T, or auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=None, help="name of the run (default: data folder)")
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--no-doc", action="store_true", help="do not touch docs/")


def pick(parser, text: str, known, what: str) -> list[str]:
    """The comma-separated names in ``text``; a parser error names the unknown ones."""
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in names if v not in known]
    if unknown:
        parser.error(f"unknown {what}(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return names
