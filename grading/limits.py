"""Every default limit of grading, in one place: the CLI, the Gradescope bundle, pytest's options
and the sandbox take theirs from here."""
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Limits:
    """What one submission's grading may use. The first three are options of every front end
    (--time-limit, --memory-limit, grade-all's --timeout, Gradescope's --seconds)."""
    time_limit: float = 60  # seconds each stage of a graded function may take: its cell, each
    # call; the function in all: this times (its calls + 2). Written 60, not 60.0: the messages
    # print it as given ("did not finish within 60 s")
    memory_limit_mb: int = 4096  # resident memory of one graded function's worker (its tree)
    submission_seconds: float = 900  # one whole submission's grading
    processes: int = 512  # processes and threads of one worker at once
    scratch_mb: int = 512  # all the files one worker may write
    file_mb: int = 256  # the largest file one worker may write

    def without_submission_limit(self):
        return replace(self, submission_seconds=None)


LIMITS = Limits()
TIME_LIMIT_HELP = ("seconds each stage of a graded function may take (its cell, each call); the "
                   "function in all: this times (its calls + 2)")  # --time-limit's, everywhere
# Gradescope's default container (768 MB, half a CPU, 10 minutes). submission_seconds: one
# submission's grading in all, the sandbox's start included, so that a submission whose
# functions hang gets its result within Gradescope's timeout. memory_limit_mb: what one graded
# function's worker may use (its tree's resident memory, about 310 MB of it for a correct
# model_nn, some 120 MB of that shared with the sandbox): with the grader and the sandbox,
# grading stays under gradescope.GRADING_NEEDS_MIB, and a function that eats memory is stopped
# with a message instead of the container being killed.
GRADESCOPE = replace(LIMITS, memory_limit_mb=448, submission_seconds=480)
