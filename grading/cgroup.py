"""A control group (cgroup v1 or v2) of a worker's own: every kind of memory the kernel charges
to it (anonymous, memfd and shared memory, files in its tmpfs), its processes and threads, one
CPU. And the one reader of this process's own groups (/proc/self/cgroup), which the Gradescope
front end and the tests' container groups use too."""
import os
import time
from pathlib import Path

from grading.limits import LIMITS

CGROUPS = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 100_000  # one CPU: quota = period


def memberships(membership=Path("/proc/self/cgroup")):
    """{controller: this process's group's path} from `membership`; "" is cgroup v2's."""
    groups = {}
    for line in membership.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            groups.setdefault(controller, path)
    return groups


def own_group(controller):
    """This process's cgroup folder in the hierarchy of `controller` ("" for v2)."""
    path = memberships().get(controller)
    if path is None:
        raise OSError(f"no {controller or 'v2'} cgroup for this process")
    return CGROUPS / controller / path.lstrip("/") if controller else CGROUPS / path.lstrip("/")


class Cgroup:
    """The worker's control group: memory, processes and one CPU. v2 where /sys/fs/cgroup is
    unified, else one group in each v1 hierarchy; created below this process's own group."""

    def __init__(self, name, memory_bytes):
        self.folders = {}
        try:
            if (CGROUPS / "cgroup.controllers").exists():  # v2
                folder = own_group("") / name
                folder.mkdir()
                self.folders = {"memory": folder, "pids": folder, "cpu": folder}
                self._write("memory", "memory.max", memory_bytes)
                self._write("memory", "memory.swap.max", 0, required=False)
                self._write("cpu", "cpu.max", f"{CPU_PERIOD_US} {CPU_PERIOD_US}")
            else:
                for controller in ("memory", "pids", "cpu"):
                    folder = own_group(controller) / name
                    folder.mkdir()
                    self.folders[controller] = folder
                self._write("memory", "memory.limit_in_bytes", memory_bytes)
                self._write("cpu", "cpu.cfs_period_us", CPU_PERIOD_US)
                self._write("cpu", "cpu.cfs_quota_us", CPU_PERIOD_US)
            self._write("pids", "pids.max", LIMITS.processes)
        except OSError:  # what was made is removed: a half-made group is no group
            self.remove()
            raise

    def _write(self, controller, file, value, required=True):
        try:
            (self.folders[controller] / file).write_text(f"{value}\n")
        except OSError:
            if required:
                raise

    def join(self):
        """Put this process (and so everything it starts) in the group."""
        for folder in set(self.folders.values()):
            (folder / "cgroup.procs").write_text(f"{os.getpid()}\n")

    def _count(self, controller, file, key):
        try:
            for line in (self.folders[controller] / file).read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def out_of_memory(self):
        """Whether the kernel killed a process of the group for want of memory."""
        return (self._count("memory", "memory.events", "oom_kill")
                or self._count("memory", "memory.oom_control", "oom_kill")) > 0

    def out_of_processes(self):
        """Whether a process or thread of the group could not start for the limit."""
        return self._count("pids", "pids.events", "max") > 0

    def remove(self):
        for folder in set(self.folders.values()):
            for _ in range(100):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # its last processes are still being reaped
                    time.sleep(0.01)


def remove_groups(prefix):
    """Remove the empty groups below this process's own whose names start with `prefix` (those
    of supervisors that were killed before they could remove their own)."""
    for controller in ("", "memory", "pids", "cpu"):
        try:
            folders = list(own_group(controller).glob(prefix + "*"))
        except OSError:
            continue
        for folder in folders:
            try:
                folder.rmdir()
            except OSError:
                pass
