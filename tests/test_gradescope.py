"""The Gradescope autograder: the zip `python -m grading gradescope` writes, unpacked into a
folder laid out like Gradescope's (source/, submission/, results/), grading each kind of
submission with run_autograder into a results.json that follows Gradescope's format."""
import json
import re
import shutil
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT
from grading import gradescope
from grading.notebook import GRADED_FUNCTIONS
from grading.plans import check_names
from grading.results import Grades
from submissions import ATTACKS, BROKEN, make_release, with_graded_cell_replaced

BUDGET = 60  # seconds a submission may take in the bundle for hanging (30 for the functions,
TIME_LIMIT = 20  # so two functions that hang use them up)
TOP_LEVEL = {"score", "execution_time", "output", "output_format", "test_output_format",
             "test_name_format", "visibility", "stdout_visibility", "extra_data", "tests",
             "leaderboard"}
TEST_FIELDS = {"score", "max_score", "status", "name", "name_format", "number", "output",
               "output_format", "tags", "visibility", "extra_data"}
FORMATS = {"text", "html", "simple_format", "md", "ansi"}  # Gradescope's "Output String Formatting"
FORMAT_FIELDS = {"output_format", "test_output_format", "test_name_format", "name_format"}
VISIBILITIES = {"hidden", "after_due_date", "after_published", "visible"}


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
    for fields in (results, *results["tests"]):
        assert all(fields[key] in FORMATS for key in FORMAT_FIELDS & set(fields)), fields
        assert fields.get("visibility", "visible") in VISIBILITIES
    assert results.get("stdout_visibility", "hidden") in VISIBILITIES
    for test in results["tests"]:
        assert set(test) <= TEST_FIELDS and {"name", "score", "max_score", "status"} <= set(test)
        assert test["status"] in ("passed", "failed") and isinstance(test["output"], str)
        assert 0 <= test["score"] <= test["max_score"]
    assert results["score"] == pytest.approx(sum(test["score"] for test in results["tests"]))
    assert isinstance(results["execution_time"], int) and isinstance(results["output"], str)
    return results


def scores(results):
    return {test["name"]: test["score"] for test in results["tests"]}


def plain(markdown):
    """Markdown's text with its backslash escapes undone."""
    return re.sub(r"\\(.)", r"\1", markdown)


def test_our_notebook_gets_full_marks(bundle, tmp_path):
    results, _ = autograde(bundle, tmp_path, {
        "nst_assignment.ipynb": (ROOT / "nst_assignment.ipynb").read_bytes()})
    assert results["score"] == pytest.approx(100)
    assert "5/5 graded functions pass" in results["output"]


def test_the_release_gets_zero_with_every_functions_reason(bundle, tmp_path):
    release = make_release(tmp_path / "release.ipynb")
    results, _ = autograde(bundle, tmp_path / "run", {"nst_assignment.ipynb": release.read_bytes()})
    assert results["score"] == 0
    checks = check_names()
    for test in results["tests"]:  # every check listed, each failing one with its reason
        name = test["name"]
        assert test["status"] == "failed", test
        assert test["output"].startswith(f"{len(checks[name])} of {len(checks[name])} checks fail")
        assert test["output"].count("- FAIL `") == len(checks[name]), test["output"]
        for check in checks[name]:
            assert f"- FAIL `test_{name}[{check}]`:\n\n      {name}: " in test["output"], check


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
    assert results["score"] == 0
    assert "submit only your nst_assignment.ipynb" in plain(results["output"])


def test_with_several_notebooks_the_assignments_is_graded(bundle, tmp_path):
    ours = (ROOT / "nst_assignment.ipynb").read_bytes()
    results, _ = autograde(bundle, tmp_path, {"nst_assignment.ipynb": ours,
                                              "old/draft.ipynb": b"not json"})
    assert results["score"] == pytest.approx(100)
    assert "nst_assignment.ipynb was graded" in plain(results["output"])


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


def test_messages_are_markdown_that_shows_them_as_written(bundle, tmp_path):
    results, _ = autograde(bundle, tmp_path, {"answers.pdf": b"%PDF-1.4"})
    assert results["output_format"] == results["test_output_format"] == "md"
    assert all(test["output_format"] == "md" for test in results["tests"])
    assert "upload your nst\\_assignment.ipynb" in results["output"]  # _ would start emphasis


def grades_failing(failures):
    """Grades of a notebook whose checks pass but `failures` ({(function, check): reason})."""
    results = {name: dict.fromkeys(checks) for name, checks in check_names().items()}
    for (function, check), reason in failures.items():
        results[function][check] = reason
    return Grades(3, results)


def test_results_list_every_failing_check_and_score_partial_credit():
    grades = grades_failing({
        ("gram_matrix", "matches_numpy_on_hidden_input_1"): "gram_matrix: *one*",
        ("gram_matrix", "matches_numpy_on_hidden_input_3"): "gram_matrix: <two>"})
    settings = {**gradescope.DEFAULTS, "points": {**gradescope.DEFAULTS["points"],
                                                  "gram_matrix": 30}}
    for partial, earned in ((False, 0), (True, 18)):  # 3 of 5 checks pass: 3/5 of 30 points
        results = valid(gradescope.results_for(grades, {**settings, "partial_credit": partial},
                                               "", 10))
        test = next(test for test in results["tests"] if test["name"] == "gram_matrix")
        assert test["score"] == earned and test["max_score"] == 30 and test["status"] == "failed"
        assert "      gram_matrix: *one*\n" in test["output"]  # in code blocks: shown as written
        assert "      gram_matrix: <two>\n" in test["output"]
        assert "- pass `test_gram_matrix[gives_reference_value]`" in test["output"]
        assert results["score"] == pytest.approx(80 + earned)
        assert "--seed 3 --time-limit 60 --memory-limit 448" in results["output"]


def test_partial_credit_bundle_gives_the_share_of_checks_that_pass(tmp_path):
    """A compute_content_cost that returns the Expected Output value passes that check only."""
    bundle = build(tmp_path, "--partial-credit")
    function, source = BROKEN["hard_coded_expected_output"]
    notebook = with_graded_cell_replaced(function, source, tmp_path / "student.ipynb")
    results, _ = autograde(bundle, tmp_path / "run", {"nst_assignment.ipynb":
                                                      notebook.read_bytes()})
    share = 20 * 1 / len(check_names()[function])
    assert scores(results) == {name: share if name == function else 20
                               for name in GRADED_FUNCTIONS}


def test_setup_installs_only_what_grading_needs(bundle, tmp_path):
    with zipfile.ZipFile(bundle) as opened:
        opened.extractall(tmp_path)
    setup = (tmp_path / "setup.sh").read_text()
    subprocess.run(["bash", "-n", str(tmp_path / "setup.sh")], check=True)
    installs = [line for line in setup.splitlines() if "pip install" in line]
    assert installs and all(line.rstrip().endswith("-r grading/requirements.txt")
                            for line in installs)
    assert (tmp_path / "grading" / "requirements.txt").read_bytes() == \
        (ROOT / "grading" / "requirements.txt").read_bytes()
    assert "ppa:" not in setup and "add-apt-repository" not in setup


@pytest.mark.skipif(shutil.which("shellcheck") is None,
                    reason="needs shellcheck (Debian's package; .ci/run installs it)")
def test_the_bundles_scripts_and_ci_pass_shellcheck(bundle, tmp_path):
    """setup.sh and run_autograder as the zip holds them (their templates filled in), and
    .ci/run: shellcheck finds nothing, not even a style note."""
    with zipfile.ZipFile(bundle) as opened:
        opened.extractall(tmp_path, members=["setup.sh", "run_autograder"])
    assert "@" not in (tmp_path / "setup.sh").read_text().split("SUPPORTED=")[1].split("\n")[0]
    checked = subprocess.run(["shellcheck", "--severity=style", str(tmp_path / "setup.sh"),
                              str(tmp_path / "run_autograder"), str(ROOT / ".ci" / "run")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout


def test_grading_requirements_are_pinned_as_in_requirements_txt():
    def pins(path):
        lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
        return [line for line in lines if line]

    everything = set(pins(ROOT / "requirements.txt"))
    grading = pins(ROOT / "grading" / "requirements.txt")
    assert grading and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[^=\s]+", line) for line in grading)
    assert set(grading) <= everything, set(grading) - everything
    assert {"tensorflow", "numpy", "scipy", "pillow", "psutil"} <= \
        {line.split("==")[0].lower() for line in grading}


def test_every_entry_carries_its_unix_mode(bundle):
    with zipfile.ZipFile(bundle) as opened:
        modes = {info.filename: (info.create_system, info.external_attr >> 16)
                 for info in opened.infolist()}
    assert {"setup.sh", "run_autograder", "nst_utils.py", "grading/requirements.txt",
            "grading/gradescope.py"} <= set(modes)
    for name, (system, mode) in modes.items():
        assert system == 3 and stat.S_ISREG(mode), (name, oct(mode))
        executable = name in ("setup.sh", "run_autograder")
        assert stat.S_IMODE(mode) == (0o755 if executable else 0o644), (name, oct(mode))


def test_unzip_lists_the_modes(bundle):
    unzip = subprocess.run(["unzip", "-Z", str(bundle)], capture_output=True, text=True)
    if unzip.returncode == 127 or "not found" in unzip.stderr:
        pytest.skip("no unzip on this machine")
    lines = {line.split()[-1]: line.split()[0] for line in unzip.stdout.splitlines()
             if line[:1] in "-?"}
    assert lines["setup.sh"] == lines["run_autograder"] == "-rwxr-xr-x", lines
    assert lines["nst_utils.py"] == "-rw-r--r--", lines


@pytest.mark.parametrize("mib", [512, 640])
def test_too_little_memory_says_which_setting_to_raise(tmp_path, mib):
    (tmp_path / "submission").mkdir()
    (tmp_path / "submission" / "nst_assignment.ipynb").write_bytes(
        (ROOT / "nst_assignment.ipynb").read_bytes())
    gradescope.run(tmp_path, container_mib=mib)
    results = valid(json.loads((tmp_path / "results" / "results.json").read_text()))
    assert results["score"] == 0
    assert f"has {mib:,} MB of memory" in results["output"]
    assert '"0.5 CPU, 0.75GB RAM" or more' in results["output"]
    assert all(test["output"] == results["output"] for test in results["tests"])


def test_enough_memory_or_no_limit_grades():
    assert gradescope.memory_too_small(None) is None
    # Gradescope's default container, "0.75GB" or "768MB", in any reading of the units
    for default_mib in (750e6 / 2 ** 20, 768e6 / 2 ** 20, 768):
        assert gradescope.memory_too_small(default_mib) is None, default_mib
    assert gradescope.GRADING_NEEDS_MIB <= 1536 and gradescope.memory_too_small(
        gradescope.GRADING_NEEDS_MIB - 1)


@pytest.mark.parametrize("version, files, expected", [
    ("v2", {"memory.max": "805306368\n"}, 768),
    ("v2", {"memory.max": "max\n"}, None),
    ("v2", {"memory.max": "max\n", "grader/memory.max": "1610612736\n"}, 1536),
    ("v1", {"memory/memory.limit_in_bytes": "805306368\n"}, 768),
    ("v1", {"memory/memory.limit_in_bytes": "9223372036854771712\n",
            "memory/grader/memory.limit_in_bytes": "3221225472\n"}, 3072),
    ("v1", {}, None),
])
def test_the_containers_memory_limit_is_read_from_its_cgroup(tmp_path, version, files, expected):
    cgroups = tmp_path / "cgroup"
    for name, text in files.items():
        (cgroups / name).parent.mkdir(parents=True, exist_ok=True)
        (cgroups / name).write_text(text)
    membership = tmp_path / "self-cgroup"
    membership.write_text("0::/grader\n" if version == "v2" else
                          "5:cpu,cpuacct:/grader\n4:memory:/grader\n0::/\n")
    assert gradescope.container_memory_mib(cgroups, membership) == expected
