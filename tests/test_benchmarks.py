"""The benchmarks package: every module imports, every runnable one answers ``--help``, and every
recipe (a base or an experiment) is a valid config. Nothing is measured or trained."""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from napari_colorrl.core.config import ColorRLConfig
from napari_colorrl.core.config_files import deep_update

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "benchmarks" / "recipes"
BASES = sorted(p.stem for p in RECIPES.glob("*.json"))
EXPERIMENTS = sorted(p.stem for p in (RECIPES / "experiments").glob("*.json"))


def _experiment(name: str) -> dict:
    return json.loads((RECIPES / "experiments" / f"{name}.json").read_text())


def _recipe(name: str) -> dict:
    """A base recipe, or an experiment's base with its changes (read as data: the tests do not
    import the benchmarks; the benchmarks run in a subprocess below)."""
    if name in BASES:
        return json.loads((RECIPES / f"{name}.json").read_text())
    spec = _experiment(name)
    return deep_update(_recipe(spec["base"]), spec["changes"])
MODULES = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem != "__init__")
RUNNABLE = [m for m in MODULES if not m.startswith("_")
            and 'if __name__ == "__main__":' in (ROOT / "benchmarks" / f"{m}.py").read_text()]

# What ``python -m NAME --help`` does (runpy runs the module as __main__), for every module in one
# process, so that torch is imported once.
HELP_ALL = """
import contextlib, io, json, runpy, sys
codes = {}
for name in sys.argv[1:]:
    sys.argv = [name, "--help"]
    with contextlib.redirect_stdout(io.StringIO()) as text:
        try:
            runpy.run_module(name, run_name="__main__", alter_sys=True)
            codes[name] = "no exit"
        except SystemExit as done:
            codes[name] = done.code if "usage: python -m " + name in text.getvalue() else "no usage"
print(json.dumps(codes))
"""


def test_every_benchmark_answers_help():
    assert {"learn", "levers", "compare", "speed", "scaling", "profile_ops"} <= set(RUNNABLE)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH"))
                                        if p)
    done = subprocess.run([sys.executable, "-c", HELP_ALL, *(f"benchmarks.{m}" for m in RUNNABLE)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    codes = json.loads(done.stdout.strip().splitlines()[-1])
    assert codes == {f"benchmarks.{m}": 0 for m in RUNNABLE}


@pytest.mark.parametrize("name", BASES + EXPERIMENTS)
def test_every_recipe_is_a_valid_config(name):
    ColorRLConfig.from_dict(_recipe(name))


def _no_op_changes(base: dict, changes: dict, path: str = "") -> list[str]:
    found = []
    for key, value in changes.items():
        if isinstance(value, dict):
            found += _no_op_changes(base.get(key, {}), value, f"{path}{key}.")
        elif key in base and base[key] == value:
            found.append(path + key)
    return found


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiments_change_only_what_differs_from_their_base(name):
    spec = _experiment(name)
    assert set(spec) == {"base", "why", "changes"}
    assert spec["base"] in BASES
    assert spec["why"].strip() and "\n" not in spec["why"]
    assert spec["changes"]
    assert _no_op_changes(_recipe(spec["base"]), spec["changes"]) == []
    assert name not in BASES
    assert BASES == ["cvppp", "dsb", "gonuclear3d"]


def _tiny_dataset(root: Path, n: int = 6) -> Path:
    import tifffile

    from napari_colorrl.core.data.synthetic import make_cells_2d

    for split, seeds in (("train", range(n)), ("val", range(100, 102))):
        for sub in ("images", "masks"):
            (root / split / sub).mkdir(parents=True)
        for seed in seeds:
            image, labels = make_cells_2d(shape=(48, 48), n_objects=4, seed=seed)
            tifffile.imwrite(root / split / "images" / f"s{seed}.tif", image)
            tifffile.imwrite(root / split / "masks" / f"s{seed}.tif", labels)
    return root


def _run_benchmark(args: list[str], cwd: Path, timeout: int = 600
                   ) -> subprocess.CompletedProcess:
    """``python -m ARGS`` from the repository, its runs under ``cwd``, one thread."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
           "OMP_NUM_THREADS": "1", "COLORRL_RUNS": str(cwd / "runs")}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _benchmark(args: list[str], cwd: Path) -> str:
    done = _run_benchmark(args, cwd)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def _tiny_config(path: Path) -> Path:
    """The tests' one small config (``conftest.tiny_config``) as a file for the benchmarks'
    ``--config``; their ``--minutes`` replaces its episode budget."""
    from conftest import tiny_config

    config = tiny_config(2, train={"val_every": 2, "checkpoint_every": 2, "threads": 1})
    path.write_text(config.to_json())
    return path


def test_finetune_benchmark_runs_end_to_end(tmp_path):
    """A few seconds per training on synthetic data: every arm trains and is scored."""
    data = _tiny_dataset(tmp_path / "data")
    out = _benchmark(["benchmarks.finetune", "--data", str(data), "--minutes", "0.03",
                      "--images", "4", "--seeds", "0", "--crop", "48", "--threads", "1"],
                     tmp_path)
    assert "| nuclei-2d unchanged |" in out and "| fine-tuned, 0.03 min |" in out
    assert "| from scratch, 0.03 min |" in out and "uncorrected frames, after one round" in out


def test_diagnose_runs_on_what_the_product_segments(tmp_path):
    """The diagnosis scores the product's segmentation (``Segmenter.segment``) of a tiny model
    and its rewards at the labels' training resolution; the oracle coloring, one color per
    object with neighbours apart, earns at least the model's reward; the minimum-size table
    scores the true objects with none removed as perfect."""
    from conftest import trained_model

    data = _tiny_dataset(tmp_path / "data", n=2)
    model = trained_model(tmp_path / "model.pt")
    out = _benchmark(["benchmarks.diagnose", "--model", str(model), "--data", str(data),
                      "--threads", "1"], tmp_path)
    assert "2 validation images" in out and "of 8 true objects" in out
    assert "| merges undone (oracle) |" in out and "| fragments joined (oracle) |" in out
    cells = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in out.splitlines()
             if line.startswith("| ")}
    rows = {k: [float(v) for v in cells[k]] for k in ("model (argmax)", "oracle coloring")}
    assert sum(rows["oracle coloring"]) >= sum(rows["model (argmax)"])
    # The pipeline's ceiling and the minimum-size sweep: the true objects with none removed
    # are a perfect segmentation, and each row has one cell per candidate size.
    assert "| oracle coloring (one color per object) |" in out
    sizes = {k: cells[k] for k in ("model", "oracle coloring's instances", "true objects")}
    assert sizes["true objects"][0].strip() == "1.000 (0.0)"
    assert len({len(cells) for cells in sizes.values()}) == 1 and len(sizes["model"]) > 2


def test_validation_benchmark_scores_both_ways_alike(tmp_path):
    """The validation benchmark runs a whole validation on a tiny model and finds the scoring
    from one table per image equal to removing small objects and scoring again per size."""
    from conftest import trained_model

    data = _tiny_dataset(tmp_path / "data", n=3)
    model = trained_model(tmp_path / "model.pt")
    out = _benchmark(["benchmarks.validation", "--model", str(model), "--data", str(data),
                      "--images", "3", "--repeats", "1", "--threads", "1"], tmp_path)
    assert "3 training images" in out
    assert "agree on every depth and size: yes" in out
    assert "| one table |" in out and "| again per size |" in out


def test_levers_screen_over_seeds_reports_mean_and_spread(tmp_path):
    """Two variants, two seeds, a few seconds each on synthetic data: every (variant, seed)
    trains and is scored, results.json holds each, and the table gives the per-seed values,
    their mean ± sd and the ratio of the means against the first variant."""
    data = _tiny_dataset(tmp_path / "data")
    config = _tiny_config(tmp_path / "tiny.json")
    out = _benchmark(["benchmarks.levers", "--data", str(data), "--config", str(config),
                      "--minutes", "0.02", "--seeds", "0,1", "--variants", "base,worst",
                      "--name", "tiny"], tmp_path)
    results = json.loads((tmp_path / "runs" / "levers-tiny" / "results.json").read_text())
    assert set(results) == {"base", "worst"} and all(set(r) == {"0", "1"}
                                                     for r in results.values())
    for variant in ("base", "worst"):
        sbd = [results[variant][s]["mean"]["sbd"] for s in ("0", "1")]
        mean, sd = statistics.mean(sbd), statistics.stdev(sbd)
        row = next(line for line in out.splitlines() if line.startswith(f"| {variant} |"))
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert cells[4] == f"{sbd[0]:.3f}, {sbd[1]:.3f}"
        assert f"{mean:.3f} ± {sd:.3f}" in cells
    base_mean = statistics.mean(results["base"][s]["mean"]["sbd"] for s in ("0", "1"))
    worst_mean = statistics.mean(results["worst"][s]["mean"]["sbd"] for s in ("0", "1"))
    worst_row = next(line for line in out.splitlines() if line.startswith("| worst |"))
    assert (f"{worst_mean / base_mean:.2f}x" if base_mean else "n/a") in worst_row
    assert (tmp_path / "runs" / "levers-tiny" / "worst-seed1" / "log.jsonl").stat().st_size > 0


def test_levers_names_a_single_seed_run_like_a_multi_seed_one(tmp_path):
    """One seed writes to VARIANT-seedS too (it wrote to VARIANT alone before, so the folders of
    a one-seed screen and of a several-seed screen of the same variant had different names)."""
    data = _tiny_dataset(tmp_path / "data")
    config = _tiny_config(tmp_path / "tiny.json")
    _benchmark(["benchmarks.levers", "--data", str(data), "--config", str(config),
                "--minutes", "0.01", "--seed", "3", "--variants", "base", "--name", "one"],
               tmp_path)
    run = tmp_path / "runs" / "levers-one"
    assert sorted(p.name for p in run.iterdir() if p.is_dir()) == ["base-seed3"]
    assert (run / "base-seed3" / "log.jsonl").stat().st_size > 0
    assert set(json.loads((run / "results.json").read_text())["base"]) == {"3"}


def test_learn_reports_where_it_chose_and_what_it_scored(tmp_path):
    """A few seconds of ``benchmarks.learn`` on synthetic data: the report says that validation
    during training ran on the share carved from train/ (it said "first images of val/", which
    the carved selection made untrue) and scores the val/ images."""
    data = _tiny_dataset(tmp_path / "data")
    config = _tiny_config(tmp_path / "tiny.json")
    out = _benchmark(["benchmarks.learn", "--data", str(data), "--config", str(config),
                      "--minutes", "0.02", "--name", "tiny"], tmp_path)
    assert "selection (carved from train/) and 2 scored validation images" in out
    assert "Validation during training (1 of the 1 images of the selection share carved " \
        "from train/" in out and "of val/" not in out
    assert (tmp_path / "runs" / "learn-tiny" / "log.jsonl").stat().st_size > 0


def test_levers_refuses_bad_seeds(tmp_path):
    data = _tiny_dataset(tmp_path / "data")
    for bad in ("0,x", "1,1", ","):
        done = _run_benchmark(["benchmarks.levers", "--data", str(data), "--recipe", "cvppp",
                               "--seeds", bad], tmp_path, timeout=120)
        assert done.returncode == 2 and "--seeds" in done.stderr, done.stderr[-2000:]


ORACLES = """
import numpy as np
from benchmarks.diagnose import fragments_joined, merges_undone
from benchmarks.splitting import absorb_small, cut_by_colors, distance_split, methods

# Three true objects; the prediction merges the top two and cuts the bottom one in two.
gt = np.zeros((10, 12), int); gt[1:5, 1:6] = 1; gt[1:5, 6:11] = 2; gt[6:9, 1:11] = 3
pred = np.zeros_like(gt); pred[1:5, 1:11] = 7; pred[6:9, 1:5] = 2; pred[6:9, 5:11] = 5
same = lambda a, b: len(np.unique(a * 100 + b)) == len(np.unique(a)) == len(np.unique(b))
cut, joined = merges_undone(pred, gt), fragments_joined(pred, gt)
assert cut.max() == 4 and same(cut[:5], gt[:5]) and same(cut[5:], pred[5:]), cut
assert joined.max() == 2 and same(joined[5:], gt[5:]) and same(joined[:5], pred[:5]), joined
assert same(fragments_joined(cut, gt), gt)

# Two discs of one color touching through a neck: the distance split cuts them, and no split
# ever joins two colors.
yy, xx = np.mgrid[:40, :60]
discs = ((yy - 20) ** 2 + (xx - 15) ** 2 < 100) | ((yy - 20) ** 2 + (xx - 45) ** 2 < 100)
colors = (discs | ((abs(yy - 20) < 2) & (xx > 15) & (xx < 45))).astype(np.uint8) * 3
colors[5:8, 25:35] = 5
split = distance_split(colors, 2.0)
assert split[20, 15] != split[20, 45] and split[20, 15] > 0 and split[20, 45] > 0
assert split.max() == 3 and split[6, 30] not in (split[20, 15], split[20, 45])
assert same(cut_by_colors(np.ones_like(colors), colors)[colors > 0], colors[colors > 0])

# A fragment touching a large object joins it; an isolated speck is dropped.
labels = np.zeros((8, 8), int); labels[1:6, 1:6] = 1; labels[1:3, 6:8] = 2; labels[7, 0] = 3
out = absorb_small(labels, 5)
assert out.max() == 1 and (out[1:3, 6:8] == 1).all() and out[7, 0] == 0

# A stricter foreground keeps only the pixels whose step 0 reached the threshold: a pale column
# through one object goes, and its two halves come apart.
colors = np.zeros((6, 9), np.uint8); colors[1:5, 1:8] = 3
probabilities = np.full((2,) + colors.shape, 0.95); probabilities[0][:, 4] = 0.65
found = methods(colors, probabilities, ("foreground",))
assert found["cc"].max() == 1
assert found["foreground 0.6"].max() == 1 and found["foreground 0.7"].max() == 2
assert (found["foreground 0.7"][:, 4] == 0).all() and found["foreground 0.9"].max() == 2
print("ok")
"""


def test_diagnose_oracles_and_split_steps_on_known_cases():
    """The diagnosis' oracles undo exactly the merge and the fragment they are given; the split
    steps screened by ``benchmarks.splitting`` cut two same-colored discs at their neck, never
    join two colors, give a touching fragment to its object, and a stricter foreground drops
    exactly the pixels under its threshold."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    done = subprocess.run([sys.executable, "-c", ORACLES], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_post_processing_choices_are_made_on_the_carved_share_never_on_val(tmp_path,
                                                                          monkeypatch):
    """``benchmarks.splitting`` and ``export_model --reselect`` choose on the share carved from
    train/ even for a run folder whose config says ``selection: val`` (a bundled model's: the
    DSB split-step screen of 2026-12-06 chose on the val/ images it reported that way)."""
    import benchmarks.export_model as export_model
    import benchmarks.splitting as splitting

    from conftest import trained_model
    from napari_colorrl.core.data.files import load_dataset_dir
    from napari_colorrl.core.model.checkpoint import load_checkpoint
    from napari_colorrl.core.training import selection

    data = _tiny_dataset(tmp_path / "data")
    run = tmp_path / "run"
    run.mkdir()
    model = trained_model(run / "model.best.pt")
    config = load_checkpoint(model).config
    assert config.train.selection == "val"
    (run / "config.json").write_text(json.dumps(config.to_dict()))
    val_names = {s.name for s in load_dataset_dir(data)[1]}
    seen: list[set] = []

    def record(segmenter, samples, *args):
        seen.append({s.name for s in samples})
        return {}

    monkeypatch.setattr(splitting, "score_all", record)
    splitting.screen(run, data)
    chosen_on, scored = seen
    assert chosen_on and not chosen_on & val_names and scored == val_names

    seen.clear()
    validate = selection.validate

    def recorded_validate(model, config, samples, *args, **kwargs):
        seen.append({s.name for s in samples})
        return validate(model, config, samples, *args, **kwargs)

    monkeypatch.setattr(selection, "validate", recorded_validate)
    choice = export_model.reselect(model, data)
    assert len(seen) == 1 and seen[0] and not seen[0] & val_names
    assert 1 <= choice["depth"] <= config.steps and choice["min_size"] >= 0


def test_steps_option_takes_a_number_or_auto():
    """``--steps 3`` once reached the settings as the string '3', which they refuse."""
    import argparse

    from benchmarks._report import steps_value

    assert steps_value("3") == 3 and steps_value("auto") == "auto"
    with pytest.raises(argparse.ArgumentTypeError, match="whole number or auto"):
        steps_value("three")
