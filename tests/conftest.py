"""Shared fixtures and the graders' options. Run from the project root: `python -m pytest`."""
import secrets
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grading.limits import LIMITS, TIME_LIMIT_HELP, Limits  # noqa: E402  (needs ROOT on sys.path)
from grading.sandbox import Sandbox  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--notebook", default=str(ROOT / "nst_assignment.ipynb"),
                     help="the notebook whose graded functions are tested (default: ours)")
    parser.addoption("--time-limit", type=float, default=LIMITS.time_limit, help=TIME_LIMIT_HELP)
    parser.addoption("--memory-limit", type=int, default=LIMITS.memory_limit_mb,
                     help="MB of memory one graded function's worker may use")
    parser.addoption("--seed", type=int, default=None,
                     help="seed of the hidden inputs (default: a fresh one, shown in the summary)")


def pytest_configure(config):
    config.addinivalue_line("markers", "graded: checks one graded function of --notebook")
    config.addinivalue_line("markers", "slow: runs a whole notebook (about half a minute)")
    seed = config.getoption("--seed")
    config.stash[SEED] = secrets.randbelow(2 ** 31) if seed is None else seed
    # started now, so that it imports TensorFlow while pytest collects the tests
    config.stash[SANDBOX] = Sandbox(config.getoption("--memory-limit")).start()


def pytest_ignore_collect(collection_path, config):
    """A grading run (-m graded) collects only the graded tests: faster, and it needs nothing
    the other test modules import."""
    if config.getoption("markexpr") == "graded" and collection_path.suffix == ".py":
        return collection_path.name != "test_graded_functions.py"
    return None


def pytest_unconfigure(config):
    config.stash[SANDBOX].close()


SEED = pytest.StashKey[int]()
SANDBOX = pytest.StashKey[Sandbox]()
GRADES = pytest.StashKey[object]()


@pytest.fixture(scope="session")
def notebook_path(request):
    return Path(request.config.getoption("--notebook")).resolve()


@pytest.fixture(scope="session")
def grades(request, notebook_path, record_testsuite_property):
    """Every check of every graded function of --notebook, decided once per run (see grading/)."""
    from grading.judge import grade_notebook

    seed = request.config.stash[SEED]
    record_testsuite_property("seed", seed)
    limits = Limits(time_limit=request.config.getoption("--time-limit"),
                    memory_limit_mb=request.config.getoption("--memory-limit"),
                    submission_seconds=None)
    request.config.stash[GRADES] = grade_notebook(notebook_path, seed, limits,
                                                  request.config.stash[SANDBOX])
    return request.config.stash[GRADES]


@pytest.fixture(scope="session")
def tiny_vgg_path(tmp_path_factory):
    """A MatConvNet-layout VGG-19 with random weights and 1/32 of the real channel counts."""
    from grading.mat_fixture import write_vgg19_mat

    return write_vgg19_mat(tmp_path_factory.mktemp("weights") / "tiny-vgg19.mat")


# ----- the score summary at the end of a grading run: grading.results renders it -----

def pytest_terminal_summary(terminalreporter, config):
    grades = config.stash.get(GRADES, None)
    if grades is None:
        return
    terminalreporter.section("graded functions")
    for result in grades.summary():
        terminalreporter.write_line(result.line())
    terminalreporter.write_line(grades.total_line())
    terminalreporter.write_line(grades.seed_line())
    terminalreporter.write_line(config.stash[SANDBOX].protections_line())
