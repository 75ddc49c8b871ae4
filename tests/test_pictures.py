"""model_nn's pictures are read where they can do no harm (grading/pictures.py): the grader
looks only at a file's header (its format by its name, its size against the image model_nn was
given) and a confined worker decodes it, within a call's time."""
import io
import os
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from grading import pictures
from grading.sandbox import Sandbox

SIZE = (56, 40)  # width, height: the hidden images'


def encoded(kind, size=SIZE, **options):
    out = io.BytesIO()
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(out, kind, **options)
    return out.getvalue(), pixels


def scan_bomb(size, scans):
    """A progressive JPEG whose last scan is repeated `scans` times: slow to decode."""
    out = io.BytesIO()
    Image.new("RGB", size, "gray").save(out, "JPEG", progressive=True, quality=50)
    data = out.getvalue()
    last = data.rindex(b"\xff\xda")
    return data[:-2] + data[last:-2] * scans + data[-2:]


@pytest.mark.parametrize("kind", ["PNG", "JPEG"])
def test_the_header_gives_the_size(kind):
    assert pictures.header_size(encoded(kind, (37, 23))[0], kind) == (37, 23)


def test_a_file_of_the_other_format_is_refused_by_its_header():
    with pytest.raises(ValueError, match="not a PNG file"):
        pictures.header_size(encoded("JPEG")[0], "PNG")
    with pytest.raises(ValueError, match="not a JPEG file"):
        pictures.header_size(encoded("PNG")[0], "JPEG")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["PNG", "JPEG"]))
def test_any_bytes_give_a_size_or_a_value_error(data, kind):
    try:
        width, height = pictures.header_size(data, kind)
    except ValueError:
        return
    assert 0 <= width < 1 << 32 and 0 <= height < 1 << 32


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(memory_limit_mb=2000) as running:
        yield running


def test_pictures_are_decoded_in_a_worker_and_hostile_ones_refused_in_time(sandbox, tmp_path):
    png, png_pixels = encoded("PNG")
    jpeg, _ = encoded("JPEG", quality=95)
    files = {"right.png": png, "right.jpg": jpeg, "jpeg_named.png": jpeg,
             "wrong_size.png": encoded("PNG", (40, 56))[0],
             "bomb.jpg": scan_bomb((2048, 2048), 5000),
             "small_bomb.jpg": scan_bomb(SIZE, 1000), "truncated.png": png[:30]}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    os.symlink(tmp_path / "right.png", tmp_path / "link.png")
    os.mkfifo(tmp_path / "fifo.png")
    names = [*files, "link.png", "fifo.png", "missing.png"]
    started = time.monotonic()
    found = pictures.read(sandbox, {name: (tmp_path, name) for name in names}, SIZE, 10, 60)
    assert time.monotonic() - started < 30
    assert np.array_equal(found["right.png"], png_pixels)
    assert found["right.jpg"].shape == (40, 56, 3) and found["right.jpg"].dtype == np.uint8
    assert found["jpeg_named.png"] == "not a PNG file, which its name says it is"
    assert found["wrong_size.png"] == "40x56 pixels, expected 56x40"
    assert found["bomb.jpg"].startswith("not a picture file (or larger than a picture of 56x40")
    assert isinstance(found["small_bomb.jpg"], np.ndarray)  # decoded, within its time
    assert isinstance(found["truncated.png"], str)
    assert "link.png" not in found and "missing.png" not in found
    assert found["fifo.png"].startswith("not a picture file")


def test_no_time_left_decodes_nothing(sandbox, tmp_path):
    (tmp_path / "0.png").write_bytes(encoded("PNG")[0])
    found = pictures.read(sandbox, {"0.png": (tmp_path, "0.png")}, SIZE, 10, 0)
    assert found["0.png"].startswith("cannot be read as a picture: decoding it took more")
