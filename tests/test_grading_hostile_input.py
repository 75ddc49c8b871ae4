"""Nothing a grading run is handed can raise past one function: whatever bytes a worker sends and
whatever file a grader is given, the result is a verdict with a sentence, and the report is
complete. Property tests feed the readers arbitrary values; the files a student can submit are
graded as Gradescope would; the checks hold on many seeds.
"""
import json
import os
import unicodedata

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT
from grading import wire
from grading.judge import decide, grade_notebook, interpret
from grading.limits import LIMITS
from grading.notebook import GRADED_FUNCTIONS, graded_cells, read_notebook
from grading.plans import make_plans
from grading.sandbox import Sandbox
from grading.wire import Ending
from submissions import STALE_PICTURES, cell, with_graded_cell_replaced
from test_gradescope import autograde, scores

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
                    max_leaves=30)
RECORDISH = st.fixed_dictionaries({}, optional={
    "stage": st.sampled_from(["cell", "loaded", "call", "done", "other"]) | JSON,
    "call": st.sampled_from(["call0", "call1", "call99"]) | JSON,
    "problem": st.text() | JSON,
    "result": st.fixed_dictionaries({}, optional={
        key: JSON | st.builds(wire.encode_array, st.lists(st.floats(), max_size=4))
        for key in wire.RESULT_KEYS}) | JSON})
PLANS = make_plans(0)
ENDING = {"how": Ending.EXIT, "status": 0, "stage": None}


@settings(max_examples=400, deadline=None)
@given(st.text() | st.binary().map(lambda raw: raw.decode("utf-8", "surrogateescape")))
def test_any_text_becomes_one_line_of_printable_characters(text):
    plain = wire.plain_text(text)
    assert not {unicodedata.category(c) for c in plain} & {"Cc", "Cf", "Cs", "Zl", "Zp"}
    assert plain == plain.strip() and "  " not in plain and not any(
        c.isspace() and c != " " for c in plain)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300) | JSON.map(lambda value: json.dumps(value).encode()))
def test_any_bytes_from_a_worker_are_a_record_or_nothing(line):
    record = wire.parse_record(line)
    assert record is None or isinstance(record, wire.Record)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(GRADED_FUNCTIONS), st.lists(RECORDISH, max_size=8))
def test_any_records_give_each_check_a_verdict(name, values):
    records = [r for r in (wire.parse_record(json.dumps(v)) for v in values) if r is not None]
    outcome = interpret(name, PLANS[name], records, ENDING, LIMITS)
    verdicts = decide(name, PLANS[name], outcome)
    assert set(verdicts) == set(PLANS[name].checks)
    assert all(v is None or (isinstance(v, str) and v.startswith(name)) for v in verdicts.values())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400) | JSON.map(lambda value: json.dumps(value).encode())
       | st.lists(JSON).map(lambda cells: json.dumps({"cells": cells}).encode()))
def test_any_file_is_a_notebook_or_a_sentence(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("notebook") / "student.ipynb"
    path.write_bytes(data)
    try:
        cells = graded_cells(read_notebook(path))
    except ValueError as problem:
        assert str(problem)
    else:
        assert all(isinstance(source, str) for source in cells.values())


@pytest.mark.parametrize("made", ["deeply_nested", "fifo", "link_to_another_file", "folder"])
def test_a_file_no_notebook_reader_expects_fails_every_function_with_a_sentence(tmp_path, made):
    path = tmp_path / "student.ipynb"
    if made == "deeply_nested":
        path.write_text('{"cells": ' + "[" * 100_000 + "]" * 100_000 + "}")
    elif made == "fifo":
        os.mkfifo(path)  # opening it for reading would block until someone writes
    elif made == "link_to_another_file":
        path.symlink_to(ROOT / "nst_assignment.ipynb")
    else:
        path.mkdir()
    grades = grade_notebook(path, seed=0)
    for result in grades.summary():
        assert not result.passed and "could not be read" in result.reason, result


def test_on_gradescope_a_fifo_among_the_files_neither_blocks_nor_hides_the_notebook(tmp_path):
    from test_gradescope import build
    bundle = build(tmp_path)
    (tmp_path / "run" / "submission").mkdir(parents=True)
    os.mkfifo(tmp_path / "run" / "submission" / "blocker.ipynb")
    results, seconds = autograde(bundle, tmp_path / "run", {
        "nst_assignment.ipynb": (ROOT / "nst_assignment.ipynb").read_bytes()}, exist_ok=True)
    assert results["score"] == pytest.approx(100), results


NEW_ATTACKS = {  # issue's points 1, 2, 4, 6, 7, 8: the function attacked, the words of its reason
    "reads_the_solution_notebook": "gram_matrix",
    "imports_the_reference_formulas": "compute_layer_style_cost",
    "takes_the_graders_gram_matrix": "gram_matrix",
    "prints_costs_in_a_list": "model_nn",
    "makes_the_train_step_count_infinite": "model_nn",
    "sends_malformed_records": "total_cost",
    "prints_the_graders_environment": "total_cost",
    "swaps_the_weights_defaults": "total_cost",
    "saves_each_picture_before_its_step": "model_nn",
}


@pytest.fixture(scope="module")
def gradescope_bundle(tmp_path_factory):
    from test_gradescope import build
    return build(tmp_path_factory.mktemp("bundle"))


@pytest.mark.parametrize("attack", NEW_ATTACKS)
def test_on_gradescope_an_attack_scores_exactly_its_other_functions(gradescope_bundle, tmp_path,
                                                                    attack, monkeypatch):
    from submissions import ATTACKS
    function, source = ATTACKS[attack]
    notebook = with_graded_cell_replaced(function, source, tmp_path / "student.ipynb")
    results, _ = autograde(gradescope_bundle, tmp_path / "run",
                           {"nst_assignment.ipynb": notebook.read_bytes()},
                           environment={"GRADER_API_TOKEN": "do-not-leak-4242"})
    assert scores(results) == {name: 0 if name == function else 20 for name in GRADED_FUNCTIONS}
    assert "do-not-leak-4242" not in json.dumps(results)


SYSTEM_ATTACKS = ["keeps_announcing_its_cell", "asks_unix_sockets_for_the_answer",
                  "reads_the_graders_keyring", "opens_doors_in_the_kernel",
                  "stalls_the_grader_with_a_scan_bomb", "forges_the_summary"]


@pytest.mark.parametrize("attack", SYSTEM_ATTACKS)
def test_on_gradescope_a_system_attack_scores_exactly_its_other_functions(gradescope_bundle,
                                                                          tmp_path, attack):
    """The grader holds a key in its session keyring; what the worker tries with the kernel
    (system calls, sockets, keyrings, a slow picture, a stopped clock, forged text) costs only
    its function, and results.json holds neither the key nor a control character."""
    from submissions import ATTACKS, KEYRING_SECRET, keys_left_behind, plant_graders_key
    plant_graders_key()
    function, source = ATTACKS[attack]
    notebook = with_graded_cell_replaced(function, source, tmp_path / "student.ipynb")
    results, seconds = autograde(gradescope_bundle, tmp_path / "run",
                                 {"nst_assignment.ipynb": notebook.read_bytes()})
    assert scores(results) == {name: 0 if name == function else 20 for name in GRADED_FUNCTIONS}
    text = json.dumps(results, ensure_ascii=False)
    assert KEYRING_SECRET not in text and not set(text) & {"\r", "\x1b", "\x85", "\u2028"}
    assert keys_left_behind() == []


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(memory_limit_mb=4096) as running:
        yield running


@pytest.mark.slow
def test_our_notebook_passes_on_50_seeds_in_a_row(sandbox):
    failures = {}
    for seed in range(1000, 1050):
        grades = grade_notebook(ROOT / "nst_assignment.ipynb", seed, sandbox=sandbox)
        failures.update({seed: r.reason for r in grades.summary() if not r.passed})
    assert failures == {}


@pytest.mark.slow
def test_pictures_saved_one_step_early_fail_on_every_seed(sandbox, tmp_path):
    notebook = with_graded_cell_replaced("model_nn", cell("model_nn", STALE_PICTURES),
                                         tmp_path / "stale.ipynb")
    for seed in range(2000, 2010):
        results = grade_notebook(notebook, seed, sandbox=sandbox).results["model_nn"]
        failed = {check for check, reason in results.items() if reason is not None}
        assert failed == {"saves_pictures_to_output"}, (seed, results)
        assert "is not the image generated at that point" in results["saves_pictures_to_output"]
