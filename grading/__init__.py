"""The grader: a notebook's graded functions run only in confined workers; a grade is what the
trusted side decides from what they sent back.

    front ends      pytest (tests/conftest.py), grade-all (gradebook.py), Gradescope
      |             (gradescope.py); each renders one results.Grades
      v
    judge.py        reads the notebook (notebook.py), draws hidden inputs (plans.py,
      |             references.py), sends each function's cell and calls as a task, decides
      |             every check from the records that came back; never imports TensorFlow
      |  Sandbox.run (sandbox.py): a request over a Unix socket, the task down a pipe
      v
    zygote.py       our code only; TensorFlow imported once; forks for each request. Which
      |             protections work here: protections.py
      |  fork                                   fork
      v                                          v
    supervisor.py   one per task: a subreaper   reference_run.py  model_nn's hidden inputs
      |             holding the worker to its   and reference results, trusted, unconfined
      |             clock, memory and output;
      |             relays its valid records and how it ended (wire.Ending)
      |  fork, then confinement.py's steps, one file per kernel mechanism: cgroup.py,
      |  namespaces.py, mounts.py, keyring.py, landlock.py, syscall_filter.py
      v
    worker.py       untrusted: runs one graded cell and its calls (or pictures.py decodes
                    pictures); sends JSON records, nothing else (wire.py)

What crosses: down, a task (the cell's source, the calls, their inputs) in wire.py's encoding;
up, wire.py's records, which the supervisor checks before it relays them and the judge parses
again, and the supervisor's ending. Every default limit is in limits.py.
"""
