import subprocess
import sys

import pytest


def test_import_is_light():
    code = (
        "import sys, napari_colorrl, napari_colorrl.core, napari_colorrl.core.config, "
        "napari_colorrl.cli\n"
        "heavy = [m for m in ('torch', 'qtpy', 'PyQt6', 'napari', 'magicgui')\n"
        "         if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_manifest_validates():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-colorrl")
    assert manifest.name == "napari-colorrl"
    result = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-colorrl"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("command", ["predict", "evaluate", "train", "demo"])
def test_cli_help_for_each_subcommand(command):
    result = subprocess.run(
        [sys.executable, "-m", "napari_colorrl", command, "--help"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: colorrl" in result.stdout
