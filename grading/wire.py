"""The wire format: the only data that crosses between the grader and a worker.

A worker runs a submission's code, so everything it sends is hostile input. It may send only
JSON lines, each one record of these kinds (anything else is dropped as malformed):

    {"stage": "cell" | "loaded" | "done"}            how far it got
    {"stage": "call", "call": ID}                    it is making call ID
    {"problem": TEXT}                                the function cannot be graded, and why
    {"call": ID, "problem": TEXT}                    call ID failed, and why
    {"call": ID, "result": {KEY: ARRAY | TEXT}}      what call ID computed

Arrays travel as float64 bytes in base64 with their shape (encode_array). `parse_record` turns
one line into a Record or None; it never raises, whatever the bytes. The grader's own messages
to a worker (a task: the cell's source, the calls and their inputs) use the same encoding.

Our own processes send the grader, in the same JSON lines:

    {"ending": {"how": ENDING, "status": INT | null, "stage": LINE | null}}
        a supervisor, once its worker is gone: how it ended (an Ending), its exit status, and
        the last stage record it relayed
    {"graph": BASE64, "names": {...}, "input_image": ARRAY}
        the reference run of model_nn (grading/reference_run.py), first: the MetaGraphDef of
        section 4 on hidden inputs, the names of its tensors, the start image
    {"reference": {"costs" | "pictures" | "final_jpeg" | "after_3" | "final": ARRAY}}
        then what model_nn's results are checked against
"""
import base64
import binascii
import enum
import json
import os
import unicodedata
from dataclasses import dataclass

import numpy as np

MAX_LINE_BYTES = 64 << 20  # one record; a whole worker may send no more than this either
MAX_ARRAY_ELEMENTS = 4 << 20
MAX_DIMENSIONS = 8
MAX_TEXT = 1 << 20  # characters of a text value or a problem
MAX_ID = 64
STAGES = ("cell", "loaded", "call", "done")
RESULT_KEYS = {"value": "array", "generated": "array", "final_input": "array",
               "train_steps": "array", "printed": "text"}


class Ending(enum.StrEnum):
    """How a worker ended, as its supervisor tells the grader."""
    EXIT = "exit"  # it exited (its status: 0, or an error's)
    SIGNAL = "signal"  # a signal killed it
    TIME = "time"  # one stage (its cell, a call) took longer than the time limit
    BUDGET = "budget"  # all its stages together took longer than they may
    MEMORY = "memory"  # its tree used more memory than it may
    OUTPUT = "output"  # it sent more than MAX_LINE_BYTES
    DISK = "disk"  # its files filled its tmpfs
    PROCESSES = "processes"  # it tried to run more processes and threads than it may


class WireError(ValueError):
    """Bytes that are not a valid record, array or task."""


def encode_array(value):
    array = np.asarray(value, dtype=np.float64)
    return {"shape": list(array.shape), "float64": base64.b64encode(array.tobytes()).decode()}


def decode_array(data):
    """A float64 array from encode_array's output; WireError unless it is exactly that."""
    if type(data) is not dict or set(data) != {"shape", "float64"}:
        raise WireError("not an encoded array")
    shape, text = data["shape"], data["float64"]
    if (type(shape) is not list or len(shape) > MAX_DIMENSIONS or type(text) is not str
            or not all(type(n) is int and 0 <= n <= MAX_ARRAY_ELEMENTS for n in shape)):
        raise WireError("bad array shape")
    size = 1
    for n in shape:
        size *= n
    if size > MAX_ARRAY_ELEMENTS:
        raise WireError("array too large")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise WireError("array bytes are not base64") from None
    if len(raw) != 8 * size:
        raise WireError("array size does not match its shape")
    return np.frombuffer(raw, dtype=np.float64).reshape(shape).copy()


@dataclass(frozen=True)
class Record:
    """One valid record: `kind` is "stage", "problem" or "result"; `call` its call id or None;
    `stage` the stage's name; `text` a problem's sentence; `result` {key: array or str}."""
    kind: str
    call: str = None
    stage: str = None
    text: str = None
    result: dict = None


def _text(value, limit=MAX_TEXT):
    if type(value) is not str:
        raise WireError("not text")
    return value[:limit]


def _call_id(value):
    if type(value) is not str or not 0 < len(value) <= MAX_ID or not value.isidentifier():
        raise WireError("bad call id")
    return value


def _result(value):
    if type(value) is not dict or not value or not set(value) <= set(RESULT_KEYS):
        raise WireError("bad result")
    return {key: _text(item) if RESULT_KEYS[key] == "text" else decode_array(item)
            for key, item in value.items()}


def read_record(data):
    """The Record that `data` (a decoded JSON value) is; WireError if it is none."""
    if type(data) is not dict:
        raise WireError("not an object")
    keys = set(data)
    if keys == {"stage"} and data["stage"] in STAGES[:2] + STAGES[3:]:
        return Record("stage", stage=data["stage"])
    if keys == {"stage", "call"} and data["stage"] == "call":
        return Record("stage", stage="call", call=_call_id(data["call"]))
    if keys == {"problem"}:
        return Record("problem", text=_text(data["problem"]))
    if keys == {"call", "problem"}:
        return Record("problem", call=_call_id(data["call"]), text=_text(data["problem"]))
    if keys == {"call", "result"}:
        return Record("result", call=_call_id(data["call"]), result=_result(data["result"]))
    raise WireError("not a record")


def loads(line):
    """JSON from bytes or text, bounded: WireError for anything else (too long, too deep,
    not UTF-8, not JSON, non-finite numbers)."""
    if len(line) > MAX_LINE_BYTES:
        raise WireError("line too long")
    try:
        return json.loads(line, parse_constant=_no_constant)
    except (ValueError, RecursionError, UnicodeDecodeError) as error:
        raise WireError(f"not JSON ({type(error).__name__})") from None


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def parse_record(line):
    """The Record on one line from a worker, or None if the line is not a valid record."""
    try:
        return read_record(loads(line))
    except WireError:
        return None


def plain_text(text):
    """`text` as one line that prints as itself: control and format characters (C0 and C1, ESC,
    bidirectional overrides) dropped, each run of white space (newlines, carriage returns, line
    and paragraph separators) one space, lone surrogates (from undecodable file names) U+FFFD.
    Every reason a worker's words reach goes through this (in grading.results.Grades) before
    a front end shows it."""
    kept = []
    for character in text:
        category = unicodedata.category(character)
        if character.isspace() or category in ("Zl", "Zp"):
            kept.append(" ")
        elif category == "Cs":
            kept.append("\ufffd")
        elif category not in ("Cc", "Cf"):
            kept.append(character)
    return " ".join("".join(kept).split())


def dumps(value):
    """One line of JSON (bytes, newline-terminated) for `value`."""
    return json.dumps(value, allow_nan=False).encode() + b"\n"


def write_all(fd, data):
    """Write every byte of `data` to the pipe `fd` (os.write may take only part of it)."""
    while data:
        data = data[os.write(fd, data):]
