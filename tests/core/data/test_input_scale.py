"""``input_scale``: a 'crop' model trained on images resized by a factor per axis (e.g. the xy
axes of an anisotropic volume halved) sees every image the same way at inference, and its
training scale, held-out slab and memory check count in the right pixels."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import tiny_config, tiny_samples
from napari_colorrl.core.config import ColorRLConfig
from napari_colorrl.core.data.files import Sample
from napari_colorrl.core.data.normalize import network_labels, scaled_shape
from napari_colorrl.core.data.scale import derived_scale, measure_training_scale


def _discs(shape=(128, 128), radius=10) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, np.uint16)
    for i, (cy, cx) in enumerate([(30, 30), (30, 90), (90, 30), (90, 90)], start=1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = i
    return labels


def test_one_number_or_one_per_axis_and_only_with_crops():
    config = tiny_config(3, input_scale=[1, 0.5, 0.5])
    assert config.crop_scale == (1.0, 0.5, 0.5)
    assert tiny_config(2, input_mode="crop", input_scale=[0.5]).crop_scale == (0.5, 0.5)
    assert tiny_config(2).crop_scale == (1.0, 1.0)
    with pytest.raises(ValueError, match=r"input_scale \[1.0, 0.5\] needs one number or 3"):
        tiny_config(3, input_scale=[1, 0.5])
    with pytest.raises(ValueError, match="applies to input_mode 'crop'"):
        tiny_config(2, input_scale=[0.5])  # tiny 2D configs resize
    with pytest.raises(ValueError, match="input_scale"):
        tiny_config(3, input_scale=[0.0])
    saved = tiny_config(3, input_scale=[1, 0.5, 0.5]).to_dict()
    assert ColorRLConfig.from_dict(saved).crop_scale == (1.0, 0.5, 0.5)


def test_labels_and_the_training_scale_at_the_network_scale():
    labels = _discs()
    config = tiny_config(2, input_mode="crop", input_scale=[0.5])
    assert scaled_shape((128, 128), config) == (64, 64)
    small = network_labels(labels, config)
    assert small.shape == (64, 64) and set(np.unique(small)) == {0, 1, 2, 3, 4}
    scale = measure_training_scale([Sample("a", labels.astype(np.float32), labels)], config)
    np.testing.assert_allclose(scale.object_size, [10, 10], rtol=0.1)  # 20 px discs, halved
    assert scale.image_scale == (0.5, 0.5)
    assert derived_scale(config).image_scale == (0.5, 0.5)


def test_training_episodes_are_crops_of_the_resized_images():
    import torch

    from napari_colorrl.core.training.environment import Environment

    config = tiny_config(3, input_scale=[1, 0.5, 0.5], input_size=[8, 8, 8])
    samples = tiny_samples(3, n=1, shape=(14, 32, 32))
    env = Environment(samples, config, torch.device("cpu"), np.random.default_rng(0))
    assert env.samples[0].image.shape == (1, 14, 16, 16)
    assert env.samples[0].labels.shape == (14, 16, 16)
    episode = env.reset(2)
    assert tuple(episode.image.shape) == (2, 1, 8, 8, 8)


def test_a_single_image_keeps_a_whole_crop_in_image_pixels():
    from napari_colorrl.core.training.setup import TrainingRequest, prepare_training

    # crops of 16 network px at scale 0.5 need 32 image px of the 40: 8 can be held out
    def prepare(share):
        return prepare_training(TrainingRequest(samples=tiny_samples(2, 1, shape=(24, 40)),
                                                ndim=2, settings={
            "train.device": "cpu", "input_size": 16, "input_mode": "crop",
            "input_scale": [0.5], "steps": 3, "train.val_share": share}))

    setup = prepare(0.2)
    assert setup.train[0].labels.shape == (24, 32) and setup.val[0].labels.shape == (24, 8)
    uncut = prepare(0.25)  # 10 px held out would leave 30 < 32
    assert uncut.val == [] and "keep 32 for training" in "\n".join(uncut.messages)


def test_a_trained_model_segments_images_at_its_scale(tmp_path):
    from napari_colorrl.core.inference import Segmenter
    from napari_colorrl.core.model.checkpoint import load_checkpoint
    from napari_colorrl.core.training.trainer import train

    config = tiny_config(2, input_mode="crop", input_scale=[0.5], input_size=[16, 16],
                         train={"episodes": 2})
    samples = tiny_samples(2, n=2, shape=(48, 48))
    list(train(config, samples, out=tmp_path / "m.pt"))
    saved = load_checkpoint(tmp_path / "m.pt").extra["training_scale"]
    assert saved["image_scale"] == [0.5, 0.5]
    segmenter = Segmenter.load(tmp_path / "m.pt", device="cpu")
    assert segmenter.plan((80, 60)).network_shape == (40, 30)
    data, shape = segmenter.network_input(samples[0].image)
    assert data.shape[1:] == (24, 24) and shape == (48, 48)
    result = segmenter.segment(samples[0].image)
    assert result.instances.shape == (48, 48) and result.plan.network_shape == (24, 24)


def test_the_setup_memory_counts_the_samples_at_the_network_scale():
    from napari_colorrl.core.runtime import setup_bytes

    shapes = [(512, 512)]
    full = setup_bytes(tiny_config(2, input_mode="crop"), shapes, 1)
    half = setup_bytes(tiny_config(2, input_mode="crop", input_scale=[0.5]), shapes, 1)
    # a crop model keeps 8 bytes a pixel (image and labels) of each sample at the network's scale
    assert full - half == 8 * (512 * 512 - 256 * 256)


def test_a_bioimage_package_readme_says_to_resize_by_the_scale():
    from napari_colorrl.core.model.bioimage_rdf import PackageText, readme

    text = PackageText(title="t", summary=None, authors=("a",), license="MIT", training=None,
                       validation="", sample="", model="m", source="m.pt")
    scaled = readme(text, tiny_config(3, input_scale=[1, 0.5, 0.5]))
    assert "First resize your image by 1 x 0.5 x 0.5 (z, y, x" in scaled
    assert "First resize" not in readme(text, tiny_config(3))
