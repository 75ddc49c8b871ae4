"""Shared fixtures. Run from the project root: `python -m pytest`."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mat_fixture import write_vgg19_mat  # noqa: E402  (needs ROOT on sys.path)
from notebook_grading import load_graded_functions  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--notebook", default=str(ROOT / "nst_assignment.ipynb"),
                     help="the notebook whose graded functions are tested (default: ours)")


def pytest_configure(config):
    config.addinivalue_line("markers", "graded: checks one graded function of --notebook")
    config.addinivalue_line("markers", "slow: runs a whole notebook (about a minute)")


@pytest.fixture(scope="session")
def notebook_path(request):
    return Path(request.config.getoption("--notebook")).resolve()


@pytest.fixture(scope="session")
def graded_notebook(notebook_path):
    """(namespace, problems) from the notebook's graded cells."""
    return load_graded_functions(notebook_path)


def require(graded_notebook, name):
    """The notebook's function `name`, or fail the test saying why it is unusable."""
    namespace, problems = graded_notebook
    if name in problems:
        pytest.fail(f"{name}: {problems[name]}", pytrace=False)
    return namespace[name]


@pytest.fixture
def graded(graded_notebook):
    """graded(name) -> the notebook's function (see require)."""
    return lambda name: require(graded_notebook, name)


@pytest.fixture(scope="session")
def tiny_vgg_path(tmp_path_factory):
    """A MatConvNet-layout VGG-19 with random weights and 1/32 of the real channel counts."""
    return write_vgg19_mat(tmp_path_factory.mktemp("weights") / "tiny-vgg19.mat")
