"""The Gradescope autograder: the zip `python -m grading gradescope` writes, unpacked into a
folder laid out like Gradescope's (source/, submission/, results/), grading each kind of
submission with run_autograder into a results.json that follows Gradescope's format."""
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT
from grading.notebook import GRADED_FUNCTIONS
from submissions import ATTACKS, BROKEN, make_release, with_graded_cell_replaced

BUDGET = 60  # seconds a submission may take in the bundle for hanging (30 for the functions,
TIME_LIMIT = 20  # so two functions that hang use them up)
TOP_LEVEL = {"score", "execution_time", "output", "output_format", "test_output_format",
             "visibility", "stdout_visibility", "extra_data", "tests", "leaderboard"}
TEST_FIELDS = {"score", "max_score", "status", "name", "number", "output", "tags",
               "visibility", "extra_data"}


def build(folder, *options):
    path = folder / "autograder.zip"
    subprocess.run([sys.executable, "-m", "grading", "gradescope", str(path), *options],
                   cwd=ROOT, check=True)
    return path


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """The autograder with its default settings."""
    return build(tmp_path_factory.mktemp("bundle"))


def autograde(bundle, folder, submitted, environment=None, exist_ok=False):
    """Unpack `bundle` as Gradescope does, put `submitted` ({name: bytes}) in submission/, run
    run_autograder (with `environment` added to its own); (results.json, seconds)."""
    for part in ("source", "submission", "results"):
        (folder / part).mkdir(parents=True, exist_ok=exist_ok)
    with zipfile.ZipFile(bundle) as opened:
        opened.extractall(folder / "source")
    for name, data in submitted.items():
        (folder / "submission" / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / "submission" / name).write_bytes(data)
    started = time.monotonic()
    subprocess.run(["bash", str(folder / "source" / "run_autograder")], check=True, timeout=600,
                   env={"AUTOGRADER_ROOT": str(folder), **(environment or {}),
                        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},
                   capture_output=True)
    results = json.loads((folder / "results" / "results.json").read_text())
    return valid(results), time.monotonic() - started


def valid(results):
    """`results` checked against Gradescope's results.json fields."""
    assert set(results) <= TOP_LEVEL, set(results) - TOP_LEVEL
    assert isinstance(results["tests"], list) and len(results["tests"]) == len(GRADED_FUNCTIONS)
    for test in results["tests"]:
        assert set(test) <= TEST_FIELDS and {"name", "score", "max_score", "status"} <= set(test)
        assert test["status"] in ("passed", "failed") and isinstance(test["output"], str)
        assert 0 <= test["score"] <= test["max_score"]
    assert results["score"] == pytest.approx(sum(test["score"] for test in results["tests"]))
    assert isinstance(results["execution_time"], int) and isinstance(results["output"], str)
    return results


def scores(results):
    return {test["name"]: test["score"] for test in results["tests"]}


def test_our_notebook_gets_full_marks(bundle, tmp_path):
    results, _ = autograde(bundle, tmp_path, {
        "nst_assignment.ipynb": (ROOT / "nst_assignment.ipynb").read_bytes()})
    assert results["score"] == pytest.approx(100)
    assert "5/5 graded functions pass" in results["output"]


def test_the_release_gets_zero_with_every_functions_reason(bundle, tmp_path):
    release = make_release(tmp_path / "release.ipynb")
    results, _ = autograde(bundle, tmp_path / "run", {"nst_assignment.ipynb": release.read_bytes()})
    assert results["score"] == 0
    for test in results["tests"]:
        assert test["status"] == "failed" and test["output"].startswith(test["name"]), test


@pytest.mark.parametrize("kind", ["syntax_error", "kills_the_grader"])
def test_a_broken_or_attacking_submission_loses_only_its_function(bundle, tmp_path, kind):
    function, source = {**BROKEN, **ATTACKS}[kind]
    notebook = with_graded_cell_replaced(function, source, tmp_path / "student.ipynb")
    results, _ = autograde(bundle, tmp_path / "run", {"nst_assignment.ipynb":
                                                      notebook.read_bytes()})
    assert scores(results) == {name: 0 if name == function else 20 for name in GRADED_FUNCTIONS}


def test_no_notebook_gets_zero_and_says_what_to_upload(bundle, tmp_path):
    results, _ = autograde(bundle, tmp_path, {"answers.pdf": b"%PDF-1.4"})
    assert results["score"] == 0 and "No notebook was submitted" in results["output"]


def test_two_notebooks_without_ours_get_zero_and_say_which_to_submit(bundle, tmp_path):
    ours = (ROOT / "nst_assignment.ipynb").read_bytes()
    results, _ = autograde(bundle, tmp_path, {"draft.ipynb": ours, "final.ipynb": ours})
    assert results["score"] == 0 and "submit only your nst_assignment.ipynb" in results["output"]


def test_with_several_notebooks_the_assignments_is_graded(bundle, tmp_path):
    ours = (ROOT / "nst_assignment.ipynb").read_bytes()
    results, _ = autograde(bundle, tmp_path, {"nst_assignment.ipynb": ours,
                                              "old/draft.ipynb": b"not json"})
    assert results["score"] == pytest.approx(100)
    assert "nst_assignment.ipynb was graded" in results["output"]


def test_a_file_that_is_not_json_gets_zero_and_says_so(bundle, tmp_path):
    results, _ = autograde(bundle, tmp_path, {"nst_assignment.ipynb": b"\x89PNG not a notebook"})
    assert results["score"] == 0
    assert all("is not a notebook (not JSON" in test["output"] for test in results["tests"])


def test_a_submission_that_hangs_stays_within_the_budget(tmp_path):
    bundle = build(tmp_path, "--seconds", str(BUDGET), "--time-limit", str(TIME_LIMIT))
    notebook = with_graded_cell_replaced("compute_content_cost", BROKEN["cell_never_finishes"][1],
                                         tmp_path / "first.ipynb")
    notebook = with_graded_cell_replaced("gram_matrix", BROKEN["call_never_finishes"][1],
                                         tmp_path / "second.ipynb", notebook)
    results, seconds = autograde(bundle, tmp_path / "run", {"nst_assignment.ipynb":
                                                            notebook.read_bytes()})
    assert seconds < BUDGET, seconds
    outputs = {test["name"]: test["output"] for test in results["tests"]}
    assert results["score"] == 0, outputs
    assert f"its cell did not finish within {TIME_LIMIT}" in outputs["compute_content_cost"]
    assert "took longer than the time they may take" in outputs["gram_matrix"]
    assert "used up the" in outputs["model_nn"]


def test_setup_installs_only_the_requirements(bundle, tmp_path):
    with zipfile.ZipFile(bundle) as opened:
        opened.extractall(tmp_path)
    subprocess.run(["bash", "-n", str(tmp_path / "setup.sh")], check=True)
    installs = [line for line in (tmp_path / "setup.sh").read_text().splitlines()
                if "pip install" in line]
    assert installs and all(line.rstrip().endswith("-r requirements.txt") for line in installs)
    assert (tmp_path / "requirements.txt").read_text() == (ROOT / "requirements.txt").read_text()
