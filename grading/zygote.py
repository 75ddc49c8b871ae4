"""The zygote (`python -m grading.zygote FD`): our code only. It imports TensorFlow and what
workers need once, learns which protections work here, then forks a child for each request the
grader sends on its socket: a supervisor for a worker (grading/supervisor.py), or the trusted
reference run of model_nn (grading/reference_run.py). It never sees a task, a result or a
reference, so a worker forked from it inherits none."""
import contextlib
import ctypes
import json
import os
import select
import socket
import sys
import traceback

from grading import cgroup, confinement, keyring, pictures, protections, supervisor, wire

MADV_PAGEOUT = 21  # Linux 5.4+


def _page_out_libraries():
    """Ask the kernel to reclaim this process's resident pages of the shared libraries' read-only
    mappings: TensorFlow's start touched most of them once, and workers fault back in only the
    ones they use. About 130 MiB less memory per grading; a hint, which kernels before 5.4
    ignore."""
    if not sys.platform.startswith("linux"):
        return
    madvise = ctypes.CDLL(None, use_errno=True).madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) == 6 and ".so" in fields[5] and "w" not in fields[1]:
                start, end = (int(address, 16) for address in fields[0].split("-"))
                madvise(start, end - start, MADV_PAGEOUT)


def zygote_main(fd):
    """Import what workers need once, then fork a child for each request until the grader
    closes the socket; then end every descendant."""
    channel = socket.socket(fileno=fd)
    with contextlib.suppress(OSError):  # none of the grader's keys, for any descendant
        keyring.join_new_session_keyring()
    # TensorFlow's start imports all of Keras (and matplotlib) for Keras' own registrations,
    # which TF1's API never needs: kept out, that is 0.4-0.8 s of one CPU and 48 MB less per
    # grading. A cell that uses tf.keras still loads it, then.
    sys.modules["keras"] = None
    try:
        from grading import worker  # TensorFlow and nst_utils; no reference, no check
    finally:
        del sys.modules["keras"]
    worker.warm_up()
    pictures.warm_up()
    _page_out_libraries()
    confinement.prctl(confinement.PR_SET_CHILD_SUBREAPER, 1)
    works = protections.available()
    protections.IN_FORCE.update(protection for protection, on in works.items() if on)
    channel.send(b"ready " + json.dumps({p.name: on for p, on in works.items()}).encode())
    children = set()
    while True:
        readable = select.select([channel], [], [], 1.0)[0]
        children = _reap_and_kill_strays(children)
        if not readable:
            continue
        message, fds, _, _ = socket.recv_fds(channel, 1 << 16, 2)
        if not message or len(fds) != 2:
            break
        pid = os.fork()
        if pid == 0:
            channel.close()
            _child(json.loads(message), *fds)
        for descriptor in fds:
            os.close(descriptor)
        children.add(pid)
    supervisor.kill_descendants()
    cgroup.remove_groups(f"nst-{os.getpid()}-")  # of supervisors killed before they could
    os._exit(0)  # no interpreter teardown: TensorFlow's takes seconds


def _reap_and_kill_strays(children):
    """Reap ended children; kill any other child (an orphan of a supervisor that died)."""
    import psutil
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        children.discard(pid)
    for process in psutil.Process().children():
        if process.pid not in children:
            supervisor.kill(process.pid)
    return children


def _child(request, task_fd, report_fd):
    """In a fork of the zygote: a supervisor for a worker, or the trusted reference run."""
    try:
        if request["kind"] == "reference":
            from grading import reference_run
            reference_run.run(wire.loads(supervisor.read_all(task_fd)),
                              lambda record: supervisor.send(report_fd, record))
        else:
            supervisor.send(report_fd,
                            {"ending": supervisor.supervise(request, task_fd, report_fd)})
    except BaseException:
        traceback.print_exc()
        os._exit(supervisor.GRADER_ERROR)
    os._exit(0)


if __name__ == "__main__":
    zygote_main(int(sys.argv[1]))
