"""The graded tests: one per check of each graded function of --notebook.

Each check (grading/plans.py) is decided by grading/judge.py from what the function computed in
a worker process of its own (grading/sandbox.py): the Expected Output values through the
notebook's own test-cell code; NumPy's formulas on hidden inputs drawn from this run's seed;
and, for model_nn, section 4 on a hidden VGG-19 fixture, retraced against a reference run. Run:

    python -m pytest tests -m graded --notebook PATH [--seed N] [--time-limit S]
"""
import pytest

from grading.plans import check_names

pytestmark = pytest.mark.graded
CHECKS = check_names()


def verdict(grades, function, check):
    reason = grades.results[function][check]
    if reason is not None:
        pytest.fail(reason, pytrace=False)


@pytest.mark.parametrize("check", CHECKS["compute_content_cost"])
def test_compute_content_cost(grades, check):
    verdict(grades, "compute_content_cost", check)


@pytest.mark.parametrize("check", CHECKS["gram_matrix"])
def test_gram_matrix(grades, check):
    verdict(grades, "gram_matrix", check)


@pytest.mark.parametrize("check", CHECKS["compute_layer_style_cost"])
def test_compute_layer_style_cost(grades, check):
    verdict(grades, "compute_layer_style_cost", check)


@pytest.mark.parametrize("check", CHECKS["total_cost"])
def test_total_cost(grades, check):
    verdict(grades, "total_cost", check)


@pytest.mark.parametrize("check", CHECKS["model_nn"])
def test_model_nn(grades, check):
    verdict(grades, "model_nn", check)
