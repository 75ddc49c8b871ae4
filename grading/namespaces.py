"""Linux namespaces for a worker: an IPC namespace (System V segments die with the worker) and a
network namespace (no network at all, UDP included); mounts.py makes a mount namespace."""
import ctypes
import os

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWNET = 0x00020000, 0x08000000, 0x40000000
libc = ctypes.CDLL(None, use_errno=True)


def check(result, what):
    """Raise OSError (with errno's words) unless a libc call's `result` is 0."""
    if result != 0:
        raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")


def unshare(flags):
    check(libc.unshare(flags), "unshare")
