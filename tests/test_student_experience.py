"""A quiet TensorFlow start, load_image for any picture, the ✓/✗ verdict, and the pictures of a
run (summary, costs, contact sheet)."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import nst_utils
from nst_course import tf1
from conftest import ROOT
from nst_utils import (CONFIG, check_value, load_image, plot_costs, plot_iterations, plot_summary,
                       record_costs, reshape_and_normalize_image, saving_to)


# ----- TensorFlow's start: its C++ notices stay out of a student's cells, errors do not -----

def test_importing_nst_utils_and_running_a_session_print_nothing_on_stderr():
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "CUDA_"))}
    finished = subprocess.run(
        [sys.executable, "-c", "from nst_utils import *\n"
                               "with tf.Session() as sess:\n"
                               "    print(sess.run(tf.constant(2.0) * 3))\n"
                               "import os; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0 and finished.stdout == "6.0\n2\n"  # C++ errors still show
    assert finished.stderr == ""  # no absl notice, no CUDA stub, no cuInit, no oneDNN line


def test_only_tensorflows_start_up_notices_are_held_back(capfd):
    written = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1.5   7 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU "
        "will not be used.\n"
        "I0000 00:00:1.6   7 port.cc:153] oneDNN custom operations are on. You may see slightly "
        "different numerical results.\n"
        "E0000 00:00:1.7   7 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
        "Failed call to cuInit: UNKNOWN ERROR (303)\n"
        "F0000 00:00:1.8   7 something.cc:1] a real problem\n"
        "a line of Python's\n")
    with tf1._start_up_notices_held_back():
        os.write(2, written.encode())
    assert capfd.readouterr().err == ("F0000 00:00:1.8   7 something.cc:1] a real problem\n"
                                      "a line of Python's\n")


RED, GREEN, BLUE = (220, 20, 20), (20, 200, 20), (20, 20, 220)


def near(pixel, colour, tolerance=40):
    return np.abs(np.asarray(pixel, int) - colour).max() <= tolerance


def three_bands(width, height, horizontal=True):
    """Red | green | blue bands a third of the width (or height) each."""
    picture = Image.new("RGB", (width, height))
    for i, colour in enumerate((RED, GREEN, BLUE)):
        box = ((i * width // 3, 0, (i + 1) * width // 3, height) if horizontal
               else (0, i * height // 3, width, (i + 1) * height // 3))
        picture.paste(colour, box)
    return picture


@pytest.mark.parametrize("name, make", [
    ("photo.jpg", lambda: three_bands(1200, 900)),
    ("photo.png", lambda: three_bands(640, 480)),
    ("photo.bmp", lambda: three_bands(401, 301)),
    ("photo.webp", lambda: three_bands(800, 600)),
    ("photo.gif", lambda: three_bands(400, 300).convert("P")),
    ("small.png", lambda: three_bands(40, 32)),
])
def test_any_format_and_size_becomes_400x300_rgb_uint8(tmp_path, name, make):
    make().save(tmp_path / name)
    image = load_image(str(tmp_path / name))
    assert image.shape == (300, 400, 3) and image.dtype == np.uint8
    assert near(image[150, 20], RED) and near(image[150, 200], GREEN) and near(image[150, 380], BLUE)


def test_wide_picture_is_centre_cropped_not_squashed(tmp_path):
    # 3000x600 scales to 1500x300 (green: columns 500-1000); the middle 400 are 550-950
    three_bands(3000, 600).save(tmp_path / "wide.png")
    image = load_image(str(tmp_path / "wide.png"))
    assert all(near(image[row, col], GREEN) for row in (0, 150, 299) for col in (0, 200, 399))


def test_tall_picture_is_centre_cropped_not_squashed(tmp_path):
    # 400x1800 keeps its scale (green: rows 600-1200); the middle 300 rows are 750-1050
    three_bands(400, 1800, horizontal=False).save(tmp_path / "tall.png")
    image = load_image(str(tmp_path / "tall.png"))
    assert all(near(image[row, col], GREEN) for row in (0, 150, 299) for col in (0, 399))


def test_greyscale_picture_becomes_three_equal_channels(tmp_path):
    Image.new("L", (400, 300), 77).save(tmp_path / "grey.png")
    image = load_image(str(tmp_path / "grey.png"))
    assert (image == 77).all()


def test_sixteen_bit_greyscale_is_scaled_to_eight_bits(tmp_path):
    pixels = np.tile(np.linspace(0, 65535, 400).astype(np.uint16), (300, 1))
    Image.fromarray(pixels).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    image = load_image(str(tmp_path / "deep.png"))
    assert image[150, 0, 0] <= 2 and image[150, 399, 0] >= 250 and image[150, 200, 0] in range(120, 136)


def test_transparent_pixels_become_white(tmp_path):
    picture = Image.new("RGBA", (400, 300), (0, 0, 255, 255))
    picture.paste((0, 0, 0, 0), (0, 0, 200, 300))  # left half fully transparent
    picture.save(tmp_path / "logo.png")
    image = load_image(str(tmp_path / "logo.png"))
    assert near(image[150, 50], (255, 255, 255), 2) and near(image[150, 350], (0, 0, 255), 2)


def test_palette_transparency_becomes_white(tmp_path):
    picture = Image.new("P", (400, 300), 1)
    picture.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    picture.paste(0, (0, 0, 200, 300))
    picture.save(tmp_path / "sticker.gif", transparency=0)
    image = load_image(str(tmp_path / "sticker.gif"))
    assert near(image[150, 50], (255, 255, 255), 2) and near(image[150, 350], (200, 30, 30), 2)


def test_exif_rotation_of_phone_photos_is_honoured(tmp_path):
    # stored landscape, red on top and blue below; orientation 6 = show it turned 90° clockwise,
    # so the picture as seen is portrait with blue on the left and red on the right
    stored = Image.new("RGB", (400, 300), RED)
    stored.paste(BLUE, (0, 150, 400, 300))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "phone.jpg", exif=exif)
    image = load_image(str(tmp_path / "phone.jpg"))
    assert near(image[150, 20], BLUE) and near(image[150, 380], RED)


def test_other_target_sizes(tmp_path):
    three_bands(640, 480).save(tmp_path / "photo.png")
    assert load_image(str(tmp_path / "photo.png"), width=64, height=48).shape == (48, 64, 3)


def test_default_size_follows_config_changed_after_import(tmp_path, monkeypatch):
    """A student who sets CONFIG.IMAGE_WIDTH/HEIGHT (say, for a faster run) gets pictures that
    reshape_and_normalize_image accepts."""
    three_bands(640, 480).save(tmp_path / "photo.png")
    monkeypatch.setattr(CONFIG, "IMAGE_WIDTH", 200)
    monkeypatch.setattr(CONFIG, "IMAGE_HEIGHT", 150)
    image = load_image(str(tmp_path / "photo.png"))
    assert image.shape == (150, 200, 3)
    assert reshape_and_normalize_image(image).shape == (1, 150, 200, 3)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="No image file at '.*holiday.jpg'"):
        load_image(str(tmp_path / "holiday.jpg"))


def test_file_that_is_not_an_image_is_named(tmp_path):
    (tmp_path / "notes.jpg").write_text("not a picture")
    with pytest.raises(ValueError, match="'.*notes.jpg' is not an image that can be read"):
        load_image(str(tmp_path / "notes.jpg"))


def test_tiny_image_is_refused_with_its_size(tmp_path):
    Image.new("RGB", (20, 100)).save(tmp_path / "icon.png")
    with pytest.raises(ValueError, match="'.*icon.png' is only 20x100 pixels"):
        load_image(str(tmp_path / "icon.png"))


def test_wrongly_sized_array_points_to_load_image():
    with pytest.raises(ValueError, match=r"load_image\(path\)"):
        reshape_and_normalize_image(np.zeros((480, 640, 3), np.uint8))


# ----- the verdict printed by the Expected Output cells -----

@pytest.mark.parametrize("value, expected, rtol", [
    (6.7655926, 6.76559, 1e-5), (np.float32(9.190278), 9.19028, 1e-5),
    (35.34667875478276, 35.34667875478276, 1e-12),
    (np.array([[6.4223056, -4.429122], [-4.429122, 19.465837]]),
     [[6.42230511, -4.42912197], [-4.42912197, 19.46583748]], 1e-5)])
def test_verdict_ticks_the_reference_values(capsys, value, expected, rtol):
    assert check_value("x", value, expected, rtol)
    assert capsys.readouterr().out == "\u2713 x matches the Expected Output\n"


@pytest.mark.parametrize("value, expected", [
    (7.64102, 6.76559), (np.zeros((2, 2)), [[1.0, 0.0], [0.0, 1.0]]), (np.zeros(3), [0.0, 0.0])])
def test_verdict_crosses_a_wrong_value(capsys, value, expected):
    assert not check_value("J_content", value, expected)
    out = capsys.readouterr().out
    assert out.startswith("\u2717 J_content does not match the Expected Output") and out.count("\n") == 1


# ----- pictures of the run -----

REPORTS = "".join(f"Iteration {i} :\ntotal cost = {1e6 / (i + 1)}\ncontent cost = {10.0 + i}\n"
                  f"style cost = {2e4 / (i + 1)}\n" for i in range(0, 200, 20))


def test_record_costs_keeps_the_printout_and_parses_every_report(capsys):
    with record_costs() as costs:
        print(REPORTS, end="")
    assert capsys.readouterr().out == REPORTS
    assert [c[0] for c in costs] == list(range(0, 200, 20))
    assert costs[1] == (20, 1e6 / 21, 30.0, 2e4 / 21)


def test_saving_to_sets_the_output_folder_for_its_block_only(tmp_path):
    config = nst_utils.CONFIG  # as saving_to sees it
    before = config.OUTPUT_DIR
    with saving_to(str(tmp_path / "mine")) as folder:
        assert config.OUTPUT_DIR == folder == str(tmp_path / "mine") + "/"  # model_nn appends names
        with record_costs() as costs:
            print(REPORTS, end="")
        plot_costs(costs)
    assert config.OUTPUT_DIR == before and (tmp_path / "mine" / "costs.png").exists()
    with pytest.raises(KeyboardInterrupt), saving_to("output/my_images/"):
        raise KeyboardInterrupt  # a student stops a long run
    assert config.OUTPUT_DIR == before


def png_size(path):
    with Image.open(path) as picture:
        assert picture.format == "PNG"
        return picture.size


def test_figures_are_saved_as_png_of_sensible_size(tmp_path):
    with record_costs() as costs:
        print(REPORTS, end="")
    picture = np.random.default_rng(0).integers(0, 256, (300, 400, 3)).astype(np.uint8)
    plot_summary(reshape_and_normalize_image(picture), picture, picture, folder=str(tmp_path))
    plot_costs(costs, folder=str(tmp_path))
    for i in range(0, 200, 20):
        Image.fromarray(picture).save(tmp_path / f"{i}.png")
    plot_iterations(folder=str(tmp_path))
    for name, (min_width, min_height) in {"summary.png": (900, 200), "costs.png": (400, 250),
                                          "iterations.png": (900, 350)}.items():
        width, height = png_size(tmp_path / name)
        assert min_width <= width <= 2000 and min_height <= height <= 1500, (name, width, height)


def test_cost_plot_without_costs_says_how_to_record_them(tmp_path):
    with pytest.raises(ValueError, match="record_costs"):
        plot_costs([], folder=str(tmp_path))


def contact_sheet_titles(folder):
    figure = plot_iterations(folder=str(folder))
    return [ax.get_title() for ax in figure.axes if ax.get_title()]


def test_contact_sheet_shows_the_last_run_only(tmp_path):
    """A 200-step run leaves 0.png ... 180.png; a 20-step run after it writes 0.png (and the
    final picture) only: its contact sheet shows that one picture, not the old 20 ... 180."""
    picture = Image.fromarray(np.full((30, 40, 3), 90, np.uint8))
    for i in range(0, 200, 20):
        picture.save(tmp_path / f"{i}.png")
    assert contact_sheet_titles(tmp_path) == [f"iteration {i}" for i in range(0, 200, 20)]
    an_hour_ago = os.stat(tmp_path / "0.png").st_mtime - 3600
    for i in range(0, 200, 20):  # the long run was earlier
        os.utime(tmp_path / f"{i}.png", (an_hour_ago, an_hour_ago))
    picture.save(tmp_path / "0.png")  # the short run's first picture
    assert contact_sheet_titles(tmp_path) == ["iteration 0"]
    picture.save(tmp_path / "20.png")  # a 40-step run would go on so
    assert contact_sheet_titles(tmp_path) == ["iteration 0", "iteration 20"]


def test_contact_sheet_without_a_runs_first_picture_says_to_run_model_nn(tmp_path):
    Image.new("RGB", (40, 30)).save(tmp_path / "20.png")  # a left-over, no 0.png
    with pytest.raises(ValueError, match="run model_nn"):
        plot_iterations(folder=str(tmp_path))

