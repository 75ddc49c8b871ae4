"""Shared fixtures. Run from the project root: `python -m pytest`."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mat_fixture import write_vgg19_mat  # noqa: E402  (needs ROOT on sys.path)


@pytest.fixture(scope="session")
def tiny_vgg_path(tmp_path_factory):
    """A MatConvNet-layout VGG-19 with random weights and 1/32 of the real channel counts."""
    return write_vgg19_mat(tmp_path_factory.mktemp("weights") / "tiny-vgg19.mat")
