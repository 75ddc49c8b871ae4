"""Submissions that attack the grader get exactly the grade their code earns.

Each attack (tests/submissions.py) pairs a wrong graded function with a trick that would pass it
if the trick worked: patching pytest or NumPy, lying objects, exiting, killing the grader,
forging results, a background process rewriting the report, writing into the grader's files,
allocating 8 GB, a table of the inputs the tests used to give. Each is graded by the README's
command in a copy of the project; the attacked function must fail and the other four pass, in the
summary, the exit status and a JUnit report that stays the same after pytest has exited.
"""
import concurrent.futures
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import psutil
import pytest

from conftest import graded_function_of
from grading.gradebook import grader_fingerprint
from grading.notebook import GRADED_FUNCTIONS
from submissions import ATTACKS, project_copy, with_graded_cell_replaced

SETTLE_SECONDS = 3  # how long after pytest exits the report is read again


def grade_in(project, notebook, report):
    started = time.monotonic()
    finished = subprocess.run(
        [sys.executable, "-m", "pytest", "tests", "-m", "graded", "-q", "-p", "no:cacheprovider",
         f"--notebook={notebook}", f"--junitxml={report}"],
        cwd=project, capture_output=True, text=True, timeout=900)
    at_exit = report.read_bytes() if report.exists() else b""
    return {"code": finished.returncode, "stdout": finished.stdout, "report": report,
            "report_at_exit": at_exit, "seconds": time.monotonic() - started}


def read_junit(path):
    """({graded function: its first failure message or None}, seed) from a JUnit XML report."""
    results, tree = {}, ElementTree.parse(path)
    seeds = [p.get("value") for p in tree.iter("property") if p.get("name") == "seed"]
    for case in tree.iter("testcase"):
        function = graded_function_of(case.get("name", ""))
        failure = case.find("failure")
        if function is not None and results.get(function) is None:
            results[function] = None if failure is None else failure.get("message")
    return results, seeds[0] if seeds else None


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    """{attack: how grading it went}, two gradings at a time, in one copy of the project. The
    reports go to a folder anyone may write to, so only the sandbox keeps them safe."""
    project = project_copy(tmp_path_factory.mktemp("project"))
    fingerprint = grader_fingerprint(project)
    reports = Path(tempfile.mkdtemp(prefix="attack-reports-"))
    reports.chmod(0o777)
    submissions = tmp_path_factory.mktemp("attacks")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(grade_in, project, with_graded_cell_replaced(
            function, source, submissions / f"{name}.ipynb"), reports / f"{name}.xml")
            for name, (function, source) in ATTACKS.items()}
        runs = {name: future.result() for name, future in futures.items()}
    time.sleep(SETTLE_SECONDS)
    for run in runs.values():
        run["report_later"] = run["report"].read_bytes() if run["report"].exists() else b""
    yield {"runs": runs, "fingerprint_before": fingerprint,
           "fingerprint_after": grader_fingerprint(project)}
    shutil.rmtree(reports, ignore_errors=True)


@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_fails_the_attacked_function_and_only_it(attacked, attack):
    run, target = attacked["runs"][attack], ATTACKS[attack][0]
    summary = run["stdout"][run["stdout"].find("graded functions"):]
    assert run["code"] == 1, run["stdout"][-3000:]
    assert f"FAIL  {target}:" in summary, summary
    for name in GRADED_FUNCTIONS:
        if name != target:
            assert f"PASS  {name}:" in summary, summary
    assert "4/5 graded functions pass" in summary, summary


@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_report_says_so_and_stays_the_same(attacked, attack):
    run, target = attacked["runs"][attack], ATTACKS[attack][0]
    assert run["report_at_exit"] and run["report_later"] == run["report_at_exit"]
    results, seed = read_junit(run["report"])
    assert seed and set(results) == set(GRADED_FUNCTIONS)
    assert [name for name, reason in results.items() if reason is not None] == [target], results


def test_attacks_leave_the_graders_files_unchanged(attacked):
    assert attacked["fingerprint_after"] == attacked["fingerprint_before"]


def test_attacks_leave_no_process_behind(attacked):
    ours = {p.pid for p in psutil.Process().children(recursive=True)}
    strays = [p.info for p in psutil.process_iter(["pid", "cmdline"])
              if "grading.sandbox" in " ".join(p.info["cmdline"] or []) and p.pid not in ours]
    assert strays == []


EXPECTED_REASONS = {
    "exits_at_definition": "the process running compute_layer_style_cost exited with status 0 "
                           "while its cell ran",
    "exits_at_call": "the process running compute_content_cost exited with status 0 while being "
                     "called",
    "sys_exit_at_call": "gram_matrix raised SystemExit",
    "allocates_8_gb": "more than the 4096 MB of memory",
    "returns_object_that_lies": "got 0., expected",
}


@pytest.mark.parametrize("attack", EXPECTED_REASONS)
def test_attack_gets_a_message_saying_what_happened(attacked, attack):
    results, _ = read_junit(attacked["runs"][attack]["report"])
    assert EXPECTED_REASONS[attack] in results[ATTACKS[attack][0]], results
