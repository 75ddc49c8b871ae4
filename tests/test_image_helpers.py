"""CONFIG, generate_noise_image, reshape_and_normalize_image and save_image: the values and
behaviour the notebook relies on."""
import imageio.v2 as imageio
import numpy as np
import pytest

from nst_utils import (CONFIG, deprocess_image, generate_noise_image, reshape_and_normalize_image,
                       save_image)

SHAPE = (CONFIG.IMAGE_HEIGHT, CONFIG.IMAGE_WIDTH, 3)


def test_config_has_the_assignments_values():
    assert (CONFIG.IMAGE_WIDTH, CONFIG.IMAGE_HEIGHT, CONFIG.COLOR_CHANNELS) == (400, 300, 3)
    assert CONFIG.NOISE_RATIO == 0.6
    assert CONFIG.MEANS.shape == (1, 1, 1, 3)
    np.testing.assert_array_equal(CONFIG.MEANS.ravel(), [123.68, 116.779, 103.939])
    assert CONFIG.VGG_MODEL == "pretrained-model/imagenet-vgg-verydeep-19.mat"
    assert CONFIG.OUTPUT_DIR == "output/"


def test_reshape_and_normalize_adds_batch_axis_and_subtracts_means():
    image = np.random.default_rng(0).integers(0, 256, SHAPE).astype(np.uint8)
    out = reshape_and_normalize_image(image)
    assert out.shape == (1,) + SHAPE
    np.testing.assert_allclose(out[0], image - CONFIG.MEANS[0])


@pytest.mark.parametrize("shape", [(300, 401, 3), (400, 300, 3), (300, 400), (300, 400, 4)])
def test_reshape_and_normalize_rejects_wrong_shape_with_advice(shape):
    with pytest.raises(ValueError, match=r"Expected an RGB image of shape \(300, 400, 3\).*400x300"):
        reshape_and_normalize_image(np.zeros(shape, np.uint8))


def test_noise_image_blends_uniform_noise_with_content():
    content = reshape_and_normalize_image(np.full(SHAPE, 128, np.uint8))
    np.random.seed(0)
    noisy = generate_noise_image(content)
    np.random.seed(0)
    noise = np.random.uniform(-20, 20, (1,) + SHAPE).astype(np.float32)
    assert noisy.shape == (1,) + SHAPE
    np.testing.assert_allclose(noisy, noise * 0.6 + content * 0.4, rtol=1e-6)
    deviation = noisy - content * 0.4
    assert deviation.min() >= -20 * 0.6 and deviation.max() <= 20 * 0.6
    assert deviation.max() - deviation.min() > 20  # the noise really spans its range


def test_noise_ratio_one_gives_pure_noise_in_range():
    noisy = generate_noise_image(np.zeros((1,) + SHAPE), noise_ratio=1.0)
    assert noisy.min() >= -20 and noisy.max() <= 20 and noisy.std() > 10


def test_save_image_round_trip_adds_means_clips_and_creates_folder(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, SHAPE).astype(np.uint8)
    image = reshape_and_normalize_image(pixels)
    image[0, 0, 0] = [500, -500, 0]  # out of range after adding the means: must clip
    path = tmp_path / "new" / "folder" / "picture.png"
    save_image(str(path), image)
    saved = imageio.imread(path)
    assert saved.dtype == np.uint8 and saved.shape == SHAPE
    expected = pixels.copy()
    expected[0, 0] = [255, 0, 103]
    np.testing.assert_array_equal(saved, expected)


def test_save_image_writes_jpeg(tmp_path):
    image = reshape_and_normalize_image(np.full(SHAPE, 200, np.uint8))
    save_image(str(tmp_path / "out.jpg"), image)
    saved = imageio.imread(tmp_path / "out.jpg")
    assert saved.shape == SHAPE and abs(int(saved.mean()) - 200) <= 2


def test_deprocess_image_inverts_normalisation():
    pixels = np.random.default_rng(2).integers(0, 256, SHAPE).astype(np.uint8)
    picture = deprocess_image(reshape_and_normalize_image(pixels) + 1e-3)
    assert picture.dtype == np.uint8
    np.testing.assert_array_equal(picture, pixels)
