"""Kernel keyrings belong to no namespace: a process inherits its parent's session keyring
across fork and setuid, so a worker could read the keys of the grader's login or service (a
token in a systemd service's or a PAM login's session keyring). The zygote, at its start, and
every worker, before it drops to its own uid, join a new anonymous session keyring of their own,
empty and gone with them. (A worker's filter refuses keyctl, add_key and request_key, so it adds
no key to its uid's user keyring either: grading/syscall_filter.py.)
"""
import ctypes
import os
import platform

KEYCTL_JOIN_SESSION_KEYRING = 1
KEY_SPEC_SESSION_KEYRING = -3
SYS_KEYCTL = {"x86_64": 250, "aarch64": 219}.get(platform.machine())  # no wrapper in the C library


def _keyctl(*arguments):
    if SYS_KEYCTL is None:
        raise OSError(f"keyrings are not known on {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    result = libc.syscall(SYS_KEYCTL, *arguments)
    if result < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return result


def join_new_session_keyring():
    """Leave the inherited session keyring for a new, empty, anonymous one; its id."""
    return _keyctl(KEYCTL_JOIN_SESSION_KEYRING, None)
