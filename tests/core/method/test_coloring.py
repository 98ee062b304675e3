import numpy as np
import pytest
import torch

from napari_colorrl.core.method.coloring import color_dtype, colors_from_steps, run_coloring


class ScriptedPolicy:
    """Takes action bit t of a fixed target color at step t, checking the step channels."""

    def __init__(self, target: torch.Tensor, steps: int):
        self.target = target  # (B, *S) int64
        self.steps = steps
        self.calls = 0

    def __call__(self, image, channels):
        t = self.calls
        # steps not yet taken are 0, steps taken are +-1 matching the bits
        for k in range(self.steps):
            expected = ((self.target >> k) & 1).float() * 2 - 1 if k < t else 0
            assert torch.all(channels[:, k] == expected)
        self.calls += 1
        bit = ((self.target >> t) & 1).float()
        logits = torch.stack([1 - bit, bit], dim=1) * 4.0
        return logits, torch.zeros_like(bit)[:, None]


@pytest.mark.parametrize("spatial", [(5, 7), (3, 4, 5)])
def test_argmax_coloring_reproduces_target(spatial):
    steps = 4
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 2**steps, (2, *spatial), generator=gen)
    policy = ScriptedPolicy(target, steps)
    image = torch.rand(2, 1, *spatial)
    result = run_coloring(policy, image, steps)
    assert policy.calls == steps
    assert result.steps.shape == (2, steps, *spatial)
    assert result.steps.dtype == np.uint8
    assert result.colors.dtype == np.uint8
    np.testing.assert_array_equal(result.colors, target.numpy())


def test_fewer_passes_take_the_first_steps_and_leave_the_rest_untaken():
    """A model's depth k runs k passes; the network still sees its T step channels, those of
    the steps not taken 0 (ScriptedPolicy checks), and the colors are the target's k bits."""
    steps, passes = 4, 2
    target = torch.randint(0, 2**steps, (1, 6, 5), generator=torch.Generator().manual_seed(1))
    policy = ScriptedPolicy(target, steps)
    result = run_coloring(policy, torch.rand(1, 1, 6, 5), steps, passes=passes)
    assert policy.calls == passes and result.steps.shape == (1, passes, 6, 5)
    np.testing.assert_array_equal(result.colors, (target % 2**passes).numpy())
    with pytest.raises(ValueError, match="passes must be between 1 and steps"):
        run_coloring(policy, torch.rand(1, 1, 6, 5), steps, passes=5)


def test_sampling_is_seeded_and_follows_probabilities():
    def policy(image, channels):
        b, _, h, w = image.shape
        logits = torch.zeros(b, 2, h, w)
        logits[:, 1] = 2.0  # p(a=1) = sigmoid(2) ~ 0.88
        return logits

    image = torch.zeros(1, 1, 64, 64)
    a = run_coloring(policy, image, 3, sample=True, seed=7)
    b = run_coloring(policy, image, 3, sample=True, seed=7)
    c = run_coloring(policy, image, 3, sample=True, seed=8)
    np.testing.assert_array_equal(a.steps, b.steps)
    assert not np.array_equal(a.steps, c.steps)
    assert abs(a.steps.mean() - 1 / (1 + np.exp(-2))) < 0.03


def test_color_dtype_and_colors_from_steps():
    assert color_dtype(1) == np.uint8 and color_dtype(8) == np.uint8
    assert color_dtype(9) == np.uint16 and color_dtype(16) == np.uint16
    steps = np.array([[1, 0], [1, 1], [0, 1]], dtype=np.uint8)  # (T=3, 2 pixels)
    np.testing.assert_array_equal(colors_from_steps(steps), [1 + 2, 2 + 4])
    assert colors_from_steps(torch.from_numpy(steps)).tolist() == [3, 6]


def test_policy_with_image_cache_is_used():
    class Cached:
        def __init__(self):
            self.encoded = 0

        def encode_image(self, image):
            self.encoded += 1
            return image * 2

        def __call__(self, image, channels, image_features=None):
            assert image_features is not None
            return torch.zeros(image.shape[0], 2, *image.shape[2:])

    policy = Cached()
    run_coloring(policy, torch.zeros(1, 1, 8, 8), 5)
    assert policy.encoded == 1
