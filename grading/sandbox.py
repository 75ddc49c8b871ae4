"""The trust boundary, as the grader sees it: a submission's code runs only in worker processes,
which `Sandbox.run` asks the zygote for (the rooms: grading/__init__.py).

A worker is confined before it reads its task (grading/confinement.py) and held to its limits
by its supervisor (grading/supervisor.py): the wall clock per stage and in all, the resident
memory of its tree, and, where they work here (grading/protections.py), a cgroup, namespaces, a
private tmpfs, its own uid, a fresh keyring, Landlock and a seccomp filter. Then the grader gets
the worker's valid records and how it ended (grading/wire.py).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from grading import wire
from grading.confinement import ROOT, clean_environment
from grading.limits import LIMITS
from grading.protections import Protection
from grading.wire import Ending


class Sandbox:
    """Runs tasks in confined workers through one zygote; safe to use from several threads. Use as
    a context manager, or start() early (the zygote imports TensorFlow meanwhile) and close():
    then the zygote and everything it started are gone."""

    def __init__(self, memory_limit_mb=LIMITS.memory_limit_mb):
        self.memory_limit_mb = memory_limit_mb
        self.zygote = self.folder = self.socket = None
        self.ready, self.protections = False, {}
        self.lock = threading.Lock()

    def start(self):
        parent = Path(tempfile.gettempdir())
        if os.geteuid() == 0 and not _others_can_enter(parent):
            parent = Path("/tmp")  # workers, other users, must be able to reach their folders
        self.folder = Path(tempfile.mkdtemp(prefix="nst-sandbox-", dir=parent))
        os.chmod(self.folder, 0o711)  # each worker reaches its own folder, lists none
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.zygote = subprocess.Popen(
            [sys.executable, "-m", "grading.zygote", str(theirs.fileno())],
            cwd=ROOT, env=clean_environment(), pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        theirs.close()
        self.socket = ours
        return self

    def __enter__(self):
        return self.start()

    def _wait_until_ready(self):
        if not self.ready:
            message = self.socket.recv(1 << 16)
            if not message.startswith(b"ready "):
                raise RuntimeError("the grading sandbox could not start (python -m "
                                   "grading.zygote): check that TensorFlow imports")
            self.protections = {Protection[name]: works
                                for name, works in json.loads(message[6:]).items()}
            self.ready = True

    def protections_line(self):
        """'sandbox: in force: ...; not in force here: ...' (the kernel's mechanisms)."""
        with self.lock:
            self._wait_until_ready()
        used = [p.value for p, works in self.protections.items() if works]
        missing = [p.value for p, works in self.protections.items() if not works]
        return (f"sandbox protections in force: {', '.join(used) or 'none'}; not in force "
                f"here: {', '.join(missing) or 'none'} (docs/threat-model.md)")

    def scratch(self, name):
        """A new, empty folder for one worker, its own (it may write only there)."""
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.folder))

    def _start(self, request, task):
        """Have the zygote fork for `request`; feed `task` to it; the read end of its report."""
        task_read, task_write = os.pipe()
        report_read, report_write = os.pipe()
        try:
            with self.lock:
                self._wait_until_ready()
                socket.send_fds(self.socket, [json.dumps(request).encode()],
                                [task_read, report_write])
        finally:
            os.close(task_read)
            os.close(report_write)
        threading.Thread(target=_write_and_close, args=(task_write, wire.dumps(task)),
                         daemon=True).start()
        return report_read

    def run(self, task, scratch, time_limit, seconds_left=None, keep=(), kind="worker"):
        """Run `task` in a worker writing only in `scratch`/work: a graded cell and its calls
        (grading.worker.run_task), or, with kind "pictures", the decoding of pictures
        (grading.pictures.decode_task); afterwards the files named in `keep` (paths relative to
        that folder) are copied to `scratch`/kept, regular files only, and the rest is gone.

        Returns (records, ending): the worker's valid wire.Records, and how it ended:
        {"how": a wire.Ending, "status": int, "stage": its last stage Record or None}. The
        budget of all its stages is `time_limit` × (its calls + 2), `seconds_left` at most; the
        stages are the task's own, in order (supervisor.StageClock).
        """
        calls = [call["id"] for call in task["calls"]]
        budget = time_limit * (len(calls) + 2)  # the cell, each call, setting up
        if seconds_left is not None:
            budget = min(budget, seconds_left)
        report = self._start({"kind": kind, "scratch": str(scratch), "time_limit": time_limit,
                              "budget": budget, "calls": calls,
                              "memory_limit": self.memory_limit_mb << 20,
                              "keep": ["worker.log", *keep]}, task)
        with os.fdopen(report, "rb") as lines:
            *records, last = [line for line in lines] or [b""]
        ending = wire.loads(last) if last.startswith(b'{"ending"') else None
        if ending is None:
            raise RuntimeError("the grading sandbox stopped while running a worker")
        records = [record for record in map(wire.parse_record, records) if record is not None]
        stage = ending["ending"]["stage"]
        return records, {**ending["ending"], "how": Ending(ending["ending"]["how"]),
                         "stage": None if stage is None else wire.parse_record(stage)}

    def reference(self, task):
        """Start grading.reference_run for `task`; a file of the JSON lines it sends."""
        return os.fdopen(self._start({"kind": "reference"}, task), "rb")

    def close(self):
        """End the zygote and everything it started; remove the scratch folders."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        if self.zygote is None:
            return
        self.socket.close()  # the zygote ends its descendants, then itself
        try:
            self.zygote.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.zygote.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.zygote.wait()
        self.zygote = None

    def __exit__(self, *exc):
        self.close()


def _others_can_enter(folder):
    return all(os.stat(path).st_mode & 0o001 for path in [folder, *folder.resolve().parents])


def _write_and_close(fd, data):
    try:
        wire.write_all(fd, data)
    except OSError:  # the worker ended before reading all of it
        pass
    finally:
        os.close(fd)
