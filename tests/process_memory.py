"""The memory of a process tree as a container's memory limit sees it: the sum over its
processes of their PSS (proportional set size: each page divided among the processes that map
it), file-backed pages (TensorFlow's libraries) included, polled while the tree runs.

    with TreeMemory(process.pid) as memory:
        process.wait()
    memory.peak_mib, memory.peak_anon_mib   # the largest sums seen

Linux only (/proc/PID/smaps_rollup, 4.14 and later); reading other users' processes (the
grader's workers run as nobody) needs root.
"""
import os
import threading


def descendants(pid):
    """`pid` and every process below it, from the parent ids in /proc/*/stat."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # it ended while we looked
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(children.get(current, ()))
    return found


def rollup(pid):
    """{field: kB} of /proc/PID/smaps_rollup (Pss, Pss_Anon, Pss_File, Rss, ...); {} if it
    ended or has no memory (a zombie, a kernel thread)."""
    values = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as file:
            for line in file:
                name, _, rest = line.partition(":")
                parts = rest.split()
                if len(parts) == 2 and parts[1] == "kB":
                    values[name] = int(parts[0])
    except (OSError, ValueError):
        return {}
    return values


def tree_memory(pid):
    """{pid: smaps_rollup fields in kB} of every process (with memory) in the tree under `pid`."""
    return {process: values for process in descendants(pid) if (values := rollup(process))}


class TreeMemory:
    """Polls the tree under `pid` every `interval` seconds from a thread of its own while the
    `with` block runs; peak_mib and peak_anon_mib are the largest sums seen (each its own
    maximum, not necessarily at the same moment), most_processes the most processes seen, and
    at_peak {pid: smaps_rollup fields} when the sum of PSS peaked."""

    def __init__(self, pid, interval=0.02):
        self.pid, self.interval = pid, interval
        self.peak_kb = self.peak_anon_kb = self.most_processes = self.samples = 0
        self.at_peak = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._stop.is_set():
            processes = tree_memory(self.pid)
            pss = sum(values.get("Pss", 0) for values in processes.values())
            if pss > self.peak_kb:
                self.peak_kb, self.at_peak = pss, processes
            self.peak_anon_kb = max(self.peak_anon_kb, sum(values.get("Pss_Anon", 0)
                                                           for values in processes.values()))
            self.most_processes = max(self.most_processes, len(processes))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exception):
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self):
        return self.peak_kb / 1024

    @property
    def peak_anon_mib(self):
        return self.peak_anon_kb / 1024

    def __str__(self):
        return (f"peak PSS {self.peak_mib:,.0f} MiB ({self.peak_anon_mib:,.0f} MiB anonymous) "
                f"over up to {self.most_processes} processes, {self.samples} samples")
