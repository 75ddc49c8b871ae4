"""Shared fixtures and the graders' options. Run from the project root: `python -m pytest`."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mat_fixture import write_vgg19_mat  # noqa: E402  (needs ROOT on sys.path)
from notebook_grading import (GRADED_FUNCTIONS, GradedNotebook, GradingProblem,  # noqa: E402
                              graded_function_of)

GRADE_REPORTS = {}  # graded function -> {test name: None if passed, else the first reason}


def pytest_addoption(parser):
    parser.addoption("--notebook", default=str(ROOT / "nst_assignment.ipynb"),
                     help="the notebook whose graded functions are tested (default: ours)")
    parser.addoption("--time-limit", type=float, default=60,
                     help="seconds one graded cell or one call of a graded function may take")


def pytest_configure(config):
    config.addinivalue_line("markers", "graded: checks one graded function of --notebook")
    config.addinivalue_line("markers", "slow: runs a whole notebook (about half a minute)")


@pytest.fixture(scope="session")
def notebook_path(request):
    return Path(request.config.getoption("--notebook")).resolve()


@pytest.fixture(scope="session")
def graded_notebook(request, notebook_path):
    return GradedNotebook(notebook_path, request.config.getoption("--time-limit"))


@pytest.fixture
def graded(graded_notebook):
    """graded(name) -> the notebook's function; any problem with it fails the test, saying why."""
    def get(name):
        def call(*args, **kwargs):
            try:
                return graded_notebook.call(name, *args, **kwargs)
            except GradingProblem as problem:
                pytest.fail(str(problem), pytrace=False)
        if name in graded_notebook.problems:
            pytest.fail(f"{name}: {graded_notebook.problems[name]}", pytrace=False)
        return call
    return get


@pytest.fixture(scope="session")
def tiny_vgg_path(tmp_path_factory):
    """A MatConvNet-layout VGG-19 with random weights and 1/32 of the real channel counts."""
    return write_vgg19_mat(tmp_path_factory.mktemp("weights") / "tiny-vgg19.mat")


# ----- the score summary at the end of a grading run -----

def failure_reason(report):
    crash = getattr(report.longrepr, "reprcrash", None)
    text = " ".join(str(crash.message if crash else report.longrepr).split())
    return text if len(text) <= 300 else text[:297] + "..."


def pytest_runtest_logreport(report):
    if "graded" not in report.keywords:
        return
    test_name = report.nodeid.split("::")[-1]
    function = graded_function_of(test_name)
    if function is None or report.skipped:
        return
    results = GRADE_REPORTS.setdefault(function, {})
    if report.failed and results.get(test_name) is None:
        results[test_name] = failure_reason(report)
    else:
        results.setdefault(test_name, None)


def pytest_terminal_summary(terminalreporter):
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
