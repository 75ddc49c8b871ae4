"""Shared fixtures and the graders' options. Run from the project root: `python -m pytest`."""
import re
import secrets
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grading.notebook import GRADED_FUNCTIONS  # noqa: E402  (needs ROOT on sys.path)
from grading.sandbox import Sandbox  # noqa: E402

GRADE_REPORTS = {}  # graded function -> {test id: None if passed, else the first reason}


def pytest_addoption(parser):
    parser.addoption("--notebook", default=str(ROOT / "nst_assignment.ipynb"),
                     help="the notebook whose graded functions are tested (default: ours)")
    parser.addoption("--time-limit", type=float, default=60,
                     help="seconds one graded cell or one call of a graded function may take")
    parser.addoption("--memory-limit", type=int, default=4096,
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


@pytest.fixture(scope="session")
def notebook_path(request):
    return Path(request.config.getoption("--notebook")).resolve()


@pytest.fixture(scope="session")
def grades(request, notebook_path, record_testsuite_property):
    """Every check of every graded function of --notebook, decided once per run (see grading/)."""
    from grading.checks import grade_notebook

    seed = request.config.stash[SEED]
    record_testsuite_property("seed", seed)
    return grade_notebook(notebook_path, seed, request.config.getoption("--time-limit"),
                          request.config.getoption("--memory-limit"),
                          request.config.stash[SANDBOX])


@pytest.fixture(scope="session")
def tiny_vgg_path(tmp_path_factory):
    """A MatConvNet-layout VGG-19 with random weights and 1/32 of the real channel counts."""
    from grading.mat_fixture import write_vgg19_mat

    return write_vgg19_mat(tmp_path_factory.mktemp("weights") / "tiny-vgg19.mat")


# ----- the score summary at the end of a grading run -----

GRADED_TEST = re.compile(r"test_(\w+)\[(.+)\]")


def graded_function_of(test_id):
    """The graded function a test checks: graded tests are test_<function>[<check>]."""
    match = GRADED_TEST.fullmatch(test_id)
    return match[1] if match and match[1] in GRADED_FUNCTIONS else None


def failure_reason(report):
    crash = getattr(report.longrepr, "reprcrash", None)
    text = " ".join(str(crash.message if crash else report.longrepr).split())
    return text if len(text) <= 300 else text[:297] + "..."


def pytest_runtest_logreport(report):
    if "graded" not in report.keywords:
        return
    test_id = report.nodeid.split("::")[-1]
    function = graded_function_of(test_id)
    if function is None or report.skipped:
        return
    results = GRADE_REPORTS.setdefault(function, {})
    if report.failed and results.get(test_id) is None:
        results[test_id] = failure_reason(report)
    else:
        results.setdefault(test_id, None)


def pytest_terminal_summary(terminalreporter, config):
    if not GRADE_REPORTS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("graded functions")
    passing = 0
    for name in [n for n in GRADED_FUNCTIONS if n in GRADE_REPORTS]:
        results = GRADE_REPORTS[name]
        failures = [(test, reason) for test, reason in results.items() if reason is not None]
        if failures:
            test, reason = failures[0]
            write(f"FAIL  {name}: {len(failures)} of {len(results)} checks fail; "
                  f"first: {test}: {reason}")
        else:
            passing += 1
            write(f"PASS  {name}: {len(results)} checks")
    write(f"{passing}/{len(GRADE_REPORTS)} graded functions pass")
    write(f"hidden inputs drawn from seed {config.stash[SEED]} (--seed {config.stash[SEED]} "
          f"repeats them)")
