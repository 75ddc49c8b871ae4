"""What a worker can reach of the kernel beyond its files: system calls (the seccomp filter,
grading/syscall_filter.py), Unix sockets that no namespace covers, and keyrings (a fresh session
keyring, grading/keyring.py). Each test runs one cell in a worker, as tests/test_sandbox.py does.
"""
import errno
import json
import os
import socket
import tempfile
import threading
from pathlib import Path

import pyseccomp
import pytest

from grading import keyring, protections, syscall_filter
from grading.protections import Protection
from grading.sandbox import Sandbox
from submissions import GRADER_KEY, KEYRING_SECRET, keys_left_behind, plant_graders_key
from test_sandbox import run_cell

FILTER = Protection.SECCOMP_FILTER


@pytest.fixture(scope="module")
def sandbox():
    plant_graders_key()  # before the zygote starts: it inherits the grader's session keyring
    with Sandbox(memory_limit_mb=2000) as running:
        yield running


def needs(sandbox, protection):
    if not sandbox.protections.get(protection):
        sandbox.protections_line()  # waits for the zygote's report
    if not sandbox.protections.get(protection):
        pytest.skip(f"cannot run here: {protection.value} is not in force (the protections line "
                    f"says so: docs/threat-model.md)")


def found(scratch):
    return json.loads((scratch / "found.json").read_text())


def test_every_refused_system_call_fails_with_eperm_and_clone3_with_enosys(sandbox):
    needs(sandbox, FILTER)
    refused = {name: pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
               for name in [*syscall_filter.REFUSED, "clone3"]}
    body = f"""
import ctypes, json
libc = ctypes.CDLL(None, use_errno=True)
answers = {{}}
for name, number in {refused!r}.items():
    result = libc.syscall(number, 0, 0, 0, 0, 0, 0)
    answers[name] = ctypes.get_errno() if result < 0 else "allowed"
answers["filter mode"] = [line for line in open("/proc/self/status") if line.startswith("Seccomp:")]
json.dump(answers, open("found.json", "w"))"""
    _, ending, scratch = run_cell(sandbox, body)
    answers = found(scratch)
    assert answers.pop("filter mode") == ["Seccomp:\t2\n"]  # 2: a filter
    assert answers.pop("clone3") == errno.ENOSYS
    assert answers == dict.fromkeys(syscall_filter.REFUSED, errno.EPERM)
    assert ending["how"] == "exit" and ending["status"] == 0  # it went on after each refusal


def test_threads_and_processes_still_start_under_the_filter(sandbox):
    """clone3's ENOSYS sends the C library back to clone, which the filter lets through
    without namespace flags: threads (TensorFlow's pools) and forks work."""
    needs(sandbox, FILTER)
    body = """
import json, os, threading
box = []
thread = threading.Thread(target=box.append, args=("thread",))
thread.start(); thread.join()
pid = os.fork()
if pid == 0:
    os._exit(7)
box.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
with tf.Session() as session:  # TensorFlow's thread pools
    box.append(float(session.run(tf.reduce_sum(tf.ones([4, 4])))))
json.dump(box, open("found.json", "w"))"""
    _, ending, scratch = run_cell(sandbox, body)
    assert found(scratch) == ["thread", 7, 16.0], ending


def listener(address):
    """A Unix socket listening at `address` (a path, or "\\0name" for an abstract one), the list
    into which a thread puts what each connection sends, and the Event that stops it."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(address)
    if not address.startswith("\0"):
        os.chmod(address, 0o777)  # any uid may connect: only the sandbox can keep a worker out
    server.listen()
    server.settimeout(1)
    heard, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            with connection:
                connection.sendall(b"the answer")
                heard.append(connection.recv(100))
    threading.Thread(target=serve, daemon=True).start()
    return server, heard, stop


def test_unix_sockets_by_path_or_abstract_name_hear_nothing_from_a_worker(sandbox):
    folder = Path(tempfile.mkdtemp(prefix="listener-"))
    folder.chmod(0o777)
    path, abstract = str(folder / "answers.sock"), f"\0nst-answers-{os.getpid()}"
    servers = [listener(path), listener(abstract)]
    body = f"""
import json, socket
answers = []
for address in ({path!r}, {abstract!r}):
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as channel:
            channel.connect(address)
            channel.sendall(b"the inputs")
            answers.append(channel.recv(100).decode())
    except OSError as error:
        answers.append(type(error).__name__)
json.dump(answers, open("found.json", "w"))"""
    try:
        _, _, scratch = run_cell(sandbox, body)
    finally:
        for server, _, stop in servers:
            stop.set()
            server.close()
    assert [heard for _, heard, _ in servers] == [[], []]
    if sandbox.protections.get(FILTER):
        assert found(scratch) == ["PermissionError", "PermissionError"]


def test_a_worker_finds_nothing_of_the_graders_keyring_and_leaves_no_key(sandbox):
    """The grader's session keyring holds a token (plant_graders_key, before the zygote
    started): a worker neither reads it nor leaves a key of its own anywhere."""
    needs(sandbox, Protection.FRESH_KEYRING)
    body = f"""
import ctypes, json
import pyseccomp
libc = ctypes.CDLL(None, use_errno=True)
keyctl, add_key = (pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name) for name in ("keyctl", "add_key"))
value = ctypes.create_string_buffer(4096)
key = libc.syscall(keyctl, 10, -3, b"user", {GRADER_KEY!r}.encode(), 0)  # search
seen = [value.raw[:libc.syscall(keyctl, 11, key, value, 4096)].decode()] if key > 0 else []
for ring in (-3, -4, -5):
    libc.syscall(add_key, b"user", b"nst-left-behind", b"x", 1, ring)
json.dump(seen, open("found.json", "w"))"""
    _, _, scratch = run_cell(sandbox, body)
    assert KEYRING_SECRET not in json.dumps(found(scratch))
    assert keys_left_behind() == []


def search_session_keyring(description):
    """The id of the "user" key `description` in this process's session keyring, or -errno."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    key = libc.syscall(pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, "keyctl"), 10,
                       keyring.KEY_SPEC_SESSION_KEYRING, b"user", description.encode(), 0)
    return key if key >= 0 else -ctypes.get_errno()


def test_leaving_the_session_keyring_loses_its_keys():
    """Without the filter too (where seccomp is missing), a fresh session keyring has none of
    the grader's keys."""
    plant_graders_key()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        keyring.join_new_session_keyring()
        os.write(write_end, str(search_session_keyring(GRADER_KEY)).encode())
        os._exit(0)
    os.close(write_end)
    in_the_child = int(os.read(read_end, 64))
    os.waitpid(pid, 0)
    assert search_session_keyring(GRADER_KEY) > 0
    assert in_the_child == -errno.ENOKEY


def test_without_libseccomp_no_filter_is_claimed(monkeypatch):
    """Where libseccomp is missing, the filter is reported not in force, and nothing fails."""
    monkeypatch.setattr(syscall_filter, "pyseccomp", None)
    assert syscall_filter.prepare() is None and protections.available()[FILTER] is False
    syscall_filter.install(None)
