"""Submissions that attack the grader get exactly the grade their code earns.

Each attack (tests/submissions.py) pairs a wrong graded function with a trick that would pass it
if the trick worked: patching pytest or NumPy, lying objects, exiting, killing the grader,
forging results, a background process rewriting the report, writing into the grader's files,
allocating 8 GB, a table of the inputs the tests used to give. Each is graded by the README's
command in a copy of the project; the attacked function must fail and the other four pass, in the
summary, the exit status and a JUnit report that stays the same after pytest has exited.
"""
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import psutil
import pytest

from grading.gradebook import grader_fingerprint
from grading.notebook import GRADED_FUNCTIONS
from submissions import (ATTACKS, KEYRING_SECRET, keys_left_behind, plant_graders_key,
                         project_copy, with_graded_cell_replaced)

SETTLE_SECONDS = 3  # how long after pytest exits the report is read again


SECRET = "grader-secret-7f3a9"  # in the grader's environment: no report may show it


def grade_in(project, notebook, report, temporary, *options):
    started = time.monotonic()
    finished = subprocess.run(
        [sys.executable, "-m", "pytest", "tests", "-m", "graded", "-q", "-p", "no:cacheprovider",
         f"--notebook={notebook}", f"--junitxml={report}", *options],
        cwd=project, capture_output=True, text=True, timeout=900,
        env={**os.environ, "GRADER_API_TOKEN": SECRET, "TMPDIR": str(temporary)})
    at_exit = report.read_bytes() if report.exists() else b""
    return {"code": finished.returncode, "stdout": finished.stdout, "report": report,
            "report_at_exit": at_exit, "seconds": time.monotonic() - started}


def read_junit(path):
    """({graded function: its first failure message or None}, seed) from a JUnit XML report."""
    results, tree = {}, ElementTree.parse(path)
    seeds = [p.get("value") for p in tree.iter("property") if p.get("name") == "seed"]
    for case in tree.iter("testcase"):
        match = re.fullmatch(r"test_(\w+)\[.+\]", case.get("name", ""))
        function = match[1] if match and match[1] in GRADED_FUNCTIONS else None
        failure = case.find("failure")
        if function is not None and results.get(function) is None:
            results[function] = None if failure is None else failure.get("message")
    return results, seeds[0] if seeds else None


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    """{attack: how grading it went}, two gradings at a time, in one copy of the project. The
    reports go to a folder anyone may write to, so only the sandbox keeps them safe. The grader
    has a key in its session keyring, as a service or a PAM login has."""
    plant_graders_key()
    project = project_copy(tmp_path_factory.mktemp("project"))
    fingerprint = grader_fingerprint(project)
    reports = Path(tempfile.mkdtemp(prefix="attack-reports-"))
    reports.chmod(0o777)
    submissions = tmp_path_factory.mktemp("attacks")
    temporary = Path(tempfile.mkdtemp(prefix="attack-tmp-"))  # the gradings' own scratch space
    temporary.chmod(0o711)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(grade_in, project, with_graded_cell_replaced(
            function, source, submissions / f"{name}.ipynb"), reports / f"{name}.xml",
            temporary) for name, (function, source) in ATTACKS.items()}
        runs = {name: future.result() for name, future in futures.items()}
    time.sleep(SETTLE_SECONDS)
    for run in runs.values():
        run["report_later"] = run["report"].read_bytes() if run["report"].exists() else b""
    yield {"runs": runs, "fingerprint_before": fingerprint, "project": project,
           "temporary": temporary, "fingerprint_after": grader_fingerprint(project)}
    shutil.rmtree(reports, ignore_errors=True)
    shutil.rmtree(temporary, ignore_errors=True)


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


def test_no_report_shows_the_graders_environment_or_keys(attacked):
    for name, run in attacked["runs"].items():
        for secret in (SECRET, KEYRING_SECRET):
            assert secret not in run["stdout"] and secret.encode() not in run["report_later"], name


def test_attacks_leave_no_key_in_any_keyring(attacked):
    assert keys_left_behind() == []


@pytest.mark.parametrize("attack", ATTACKS)
def test_the_summary_shows_only_the_graders_own_lines(attacked, attack):
    """Whatever a worker's words hold (carriage returns, newlines, escape codes), each line of
    the summary is the grader's: one verdict per function, one total."""
    stdout = attacked["runs"][attack]["stdout"]
    lines = stdout.splitlines()
    assert not set(stdout) & {"\r", "\x1b", "\x85", "\u2028"}, attack
    assert sum(line.startswith(("PASS  ", "FAIL  ")) for line in lines) == len(GRADED_FUNCTIONS)
    assert sum(bool(re.match(r"\d+/\d+ graded functions pass", line)) for line in lines) == 1


def test_attacks_leave_the_graders_files_unchanged(attacked):
    assert attacked["fingerprint_after"] == attacked["fingerprint_before"]


def test_attacks_leave_no_process_behind(attacked):
    """No process of these gradings is left: none whose folder is the project copy (the zygote)
    or in the gradings' own temporary folder (a worker). Other gradings on the machine are not
    looked at."""
    ours = [str(attacked["project"]), str(attacked["temporary"])]
    strays = []
    for process in psutil.process_iter(["pid", "cmdline", "cwd"]):
        if any((process.info["cwd"] or "").startswith(folder) for folder in ours):
            strays.append(process.info)
    assert strays == []


EXPECTED_REASONS = {
    "exits_at_definition": "the process running compute_layer_style_cost exited with status 0 "
                           "while its cell ran",
    "exits_at_call": "the process running compute_content_cost exited with status 0 while being "
                     "called",
    "sys_exit_at_call": "(`sys.exit(0)`) raised SystemExit",
    "reads_the_solution_notebook": "the result has shape (3, 2), expected (3, 3)",
    "imports_the_reference_formulas": "got 0., expected",
    "takes_the_graders_gram_matrix": "the result has shape (3, 2), expected (3, 3)",
    "prints_costs_in_a_list": "which is not a number: print the value itself",
    "formats_costs_with_commas": "which is not a number: print the value itself",
    "makes_the_train_step_count_infinite": "with num_iterations = 3, train_step ran inf times, not 3",
    "sends_malformed_records": "exited with status 0 while being called",
    "prints_the_graders_environment": "raised",
    "swaps_the_weights_defaults": "by position: got",
    "saves_each_picture_before_its_step": "is not the image generated at that point (it should",
    "allocates_8_gb": "more than the 4096 MB of memory",
    "returns_object_that_lies": "got 0., expected",
    "keeps_announcing_its_cell": "its cell did not finish within 60 s",
    "asks_unix_sockets_for_the_answer": "PermissionError(1, 'Operation not permitted')",
    "reads_the_graders_keyring": "('search', -1, 1)",  # EPERM, and so for each add_key
    "opens_doors_in_the_kernel": "doors: {'io_uring_setup': 'EPERM', 'userfaultfd': 'EPERM', "
                                 "'unshare': 'EPERM', 'ptrace': 'EPERM', 'keyctl': 'EPERM', "
                                 "'bpf': 'EPERM', 'perf_event_open': 'EPERM', "
                                 "'process_vm_readv': 'EPERM'}",
    "stalls_the_grader_with_a_scan_bomb": "output/generated_image.jpg: not a picture file (or "
                                          "larger than a picture of 56x40 pixels can be)",
    "forges_the_summary": "gram_matrix: [2K PASS gram_matrix: 5 checks PASS",
}


@pytest.mark.parametrize("attack", EXPECTED_REASONS)
def test_attack_gets_a_message_saying_what_happened(attacked, attack):
    results, _ = read_junit(attacked["runs"][attack]["report"])
    assert EXPECTED_REASONS[attack] in results[ATTACKS[attack][0]], results
