"""Grade a notebook: send each graded function's cell and calls to a worker (grading/sandbox.py),
then decide each of its checks (grading/plans.py) from what came back, after the worker's whole
process tree is gone. `grade_notebook` is what pytest's graded tests, grade-all and Gradescope
use; its Grades (grading/results.py) is all they render.

Whatever a worker sends, leaves in its scratch folder or fails to do, and whatever file a grader
is handed, costs at most the function concerned: it fails that function's checks with a sentence,
and the grading goes on. This process never imports TensorFlow.
"""
import contextlib
import os
import shutil
import threading
import time

import numpy as np

from grading import pictures, wire
from grading.limits import LIMITS
from grading.notebook import GRADED_FUNCTIONS, graded_cells, read_notebook
from grading.plans import Mismatch, check_names, make_plans
from grading.references import REPORTED
from grading.results import GRADED, TIMED_OUT, UNREADABLE, Grades
from grading.sandbox import Sandbox
from grading.wire import Ending

PICTURE_NAMES = [f"{i}.png" for i in REPORTED] + ["generated_image.jpg"]


class ReferenceRun:
    """model_nn's hidden inputs and reference results for one seed, from a trusted process of the
    sandbox (grading/reference_run.py), read in a thread while the workers run."""

    def __init__(self, sandbox, seed):
        self.prepared, self.finished = threading.Event(), threading.Event()
        self.inputs = self.result = self.error = None
        self.thread = threading.Thread(target=self._read, args=(sandbox.reference({"seed": seed}),),
                                       daemon=True)
        self.thread.start()

    def _read(self, lines):
        try:
            with lines:
                for line in lines:
                    record = wire.loads(line)
                    if "graph" in record:
                        self.inputs = {"graph": record["graph"], "names": record["names"],
                                       "input_image": record["input_image"]}
                        self.prepared.set()
                    else:
                        self.result = {key: wire.decode_array(value)
                                       for key, value in record["reference"].items()}
        except Exception as error:  # reported by get(), in the grader's thread
            self.error = error
        finally:
            if self.result is None and self.error is None:
                self.error = RuntimeError("it ended without a result")
            self.prepared.set()
            self.finished.set()

    def task_inputs(self):
        """What a model_nn worker needs: the graph, the names of its tensors, the start."""
        self.prepared.wait()
        if self.inputs is None:
            raise RuntimeError(f"the reference run of model_nn failed: {self.error!r}")
        return self.inputs

    def get(self):
        self.finished.wait()
        if self.error is not None:
            raise RuntimeError(f"the reference run of model_nn failed: {self.error!r}")
        return self.result


class HiddenInputs:
    """The plans for one seed and model_nn's reference run: made once, used for any number of
    notebooks (a class graded with one seed)."""

    def __init__(self, seed, sandbox):
        self.seed = seed
        self.reference = ReferenceRun(sandbox, seed)
        self.plans = make_plans(seed, self.reference)


def grade_notebook(path, seed, limits=LIMITS.without_submission_limit(), sandbox=None,
                   hidden=None):
    """Grades of the notebook at `path`: every check of every graded function, within `limits`
    (a grading.limits.Limits; submission_seconds in all, None: no limit but each cell's and
    call's). Workers come from `sandbox` (started, left open) and inputs from `hidden`
    (HiddenInputs for `seed`), or from ones made for this notebook."""
    seconds = limits.submission_seconds
    started = time.monotonic()
    try:
        cells = graded_cells(read_notebook(path))
    except (OSError, ValueError) as error:
        why = f"the notebook {os.fsdecode(os.path.basename(path))} could not be read: {error}"
        return Grades(seed, {name: dict.fromkeys(checks, why)
                             for name, checks in check_names().items()}, f"{UNREADABLE}: {why}")
    with contextlib.ExitStack() as stack:
        sandbox = sandbox or stack.enter_context(Sandbox(limits.memory_limit_mb))
        hidden = hidden or HiddenInputs(seed, sandbox)
        outcomes, status = {}, GRADED
        for name in GRADED_FUNCTIONS:
            left = None if seconds is None else seconds - (time.monotonic() - started)
            if name not in cells:
                outcomes[name] = (f"no code cell starts with '# GRADED FUNCTION: {name}' "
                                  f"(keep that first line of the cell as it was given)")
            elif left is not None and left <= 0:
                outcomes[name] = (f"not graded: the functions before it used up the {seconds:g} s "
                                  f"this notebook's grading may take")
                status = f"{TIMED_OUT}: its grading used up the {seconds:g} s it may take"
            else:
                outcomes[name] = run_function(name, cells[name], hidden, sandbox, limits, left)
    # every worker this notebook had is gone: decide (Grades makes every reason one plain line)
    return Grades(hidden.seed, {name: decide(name, hidden.plans[name], outcomes[name])
                                for name in GRADED_FUNCTIONS}, status)


def run_function(name, source, hidden, sandbox, limits, seconds_left):
    """One worker for `name`: its outcome (see interpret)."""
    plan = hidden.plans[name]
    if any(probe == "model_nn" for probe, _ in plan.calls.values()):
        hidden.reference.finished.wait()  # one TensorFlow run at a time: less memory at peak
    calls = []
    for call_id, (probe, arguments) in plan.calls.items():
        if probe == "model_nn":
            arguments = {**hidden.reference.task_inputs(), **arguments}
        calls.append({"id": call_id, "probe": probe, "arguments": {
            key: wire.encode_array(value) if isinstance(value, np.ndarray) else value
            for key, value in arguments.items()}})
    task = {"function": name, "source": source, "helpers": plan.helpers, "calls": calls,
            "memory_limit_mb": limits.memory_limit_mb}
    scratch = sandbox.scratch(name)
    keep = [f"{arguments['folder']}/output/{picture}" for probe, arguments in plan.calls.values()
            if probe == "model_nn" for picture in PICTURE_NAMES]
    started = time.monotonic()
    try:
        records, ending = sandbox.run(task, scratch, limits.time_limit, seconds_left, keep)
        outcome = interpret(name, plan, records, ending, limits)
        if isinstance(outcome, dict):
            left = None if seconds_left is None else seconds_left - (time.monotonic() - started)
            add_pictures(outcome, plan, scratch / "kept", hidden, sandbox, limits.time_limit,
                         left)
        return outcome
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def add_pictures(outcome, plan, kept, hidden, sandbox, time_limit, seconds_left):
    """To each model_nn result in `outcome`: {picture name: what it saved there, decoded in a
    worker of its own, or why it cannot be read}."""
    saved = {(call_id, picture): (kept, plan.calls[call_id][1]["folder"], "output", picture)
             for call_id, result in outcome.items()
             if plan.calls[call_id][0] == "model_nn" and isinstance(result, dict)
             for picture in PICTURE_NAMES}
    if not saved:
        return
    _, height, width, _ = hidden.reference.task_inputs()["input_image"]["shape"]
    found = pictures.read(sandbox, saved, (width, height), time_limit, seconds_left)
    for call_id, picture in saved:
        outcome[call_id].setdefault("pictures", {})
        if (call_id, picture) in found:
            outcome[call_id]["pictures"][picture] = found[call_id, picture]


def decide(name, plan, outcome):
    """{check: None if it passed, else why not}; never raises, whatever the outcome holds."""
    if isinstance(outcome, str):  # the function could not be graded at all
        return dict.fromkeys(plan.checks, f"{name}: {outcome}")
    results = {}
    for check, (call_ids, verify) in plan.checks.items():
        problems = [outcome[c] for c in call_ids if isinstance(outcome[c], str)]
        if problems:
            results[check] = f"{name}: {problems[0]}"
            continue
        try:
            verify(outcome)
            results[check] = None
        except Mismatch as mismatch:
            results[check] = f"{name}: {mismatch}"
        except (KeyError, TypeError, ValueError, ArithmeticError) as error:
            results[check] = (f"{name}: what it computed is not in the form this check needs "
                              f"({type(error).__name__})")
    return results


def ending_sentence(name, ending, limits):
    """Why a worker's calls have no result, from how it ended (within `limits`)."""
    stage = ending["stage"]
    when = ("while its cell ran" if stage is None or stage.stage == "cell"
            else "while being called")
    what = "its cell" if when == "while its cell ran" else "a call"
    # every sentence is made, then one chosen: the status is an int only for exit and signal
    return {
        Ending.TIME: f"{what} did not finish within {limits.time_limit} s",
        Ending.BUDGET: "its cell and calls together took longer than the time they may take",
        Ending.MEMORY: f"used more than {limits.memory_limit_mb} MB of memory",
        Ending.OUTPUT: "the process running it sent back more data than a grade needs",
        Ending.DISK: f"wrote more than the {limits.scratch_mb} MB of files a graded function "
                     f"may write",
        Ending.PROCESSES: f"tried to run more than the {limits.processes} processes and threads "
                          f"a graded function may run at once",
        Ending.SIGNAL: f"the process running {name} was killed by signal "
                       f"{-(ending['status'] or 0)} {when}",
        Ending.EXIT: f"the process running {name} exited with status {ending['status']} {when}",
    }[ending["how"]]


def interpret(name, plan, records, ending, limits):
    """What the worker said: a sentence why nothing can be graded, or {call id: {key: float64
    array or str} | a sentence why that call has no result}."""
    outcome = {}
    for record in records:
        if record.kind == "problem" and record.call is None:
            return record.text
        if record.call not in plan.calls or record.call in outcome or record.kind == "stage":
            continue
        outcome[record.call] = record.text if record.kind == "problem" else record.result
    missing = ending_sentence(name, ending, limits)
    for call_id, (probe, _) in plan.calls.items():
        outcome.setdefault(call_id, missing)
        if probe == "model_nn" and isinstance(outcome[call_id], dict):
            if set(outcome[call_id]) != {"generated", "final_input", "printed", "train_steps"}:
                outcome[call_id] = f"the process running {name} sent back a malformed result"
        elif isinstance(outcome[call_id], dict) and set(outcome[call_id]) != {"value"}:
            outcome[call_id] = f"the process running {name} sent back a malformed result"
    return outcome
