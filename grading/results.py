"""One grading's result, and the one summary of it that every front end renders (pytest's
summary and verdicts, grade-all's gradebook row and feedback files, the class summary,
Gradescope's results.json), with the points each function earns."""
import re
from dataclasses import dataclass

from grading.notebook import GRADED_FUNCTIONS
from grading.wire import plain_text

# The points of each function unless --points says otherwise: equal shares of 100.
DEFAULT_POINTS = {name: 100 / len(GRADED_FUNCTIONS) for name in GRADED_FUNCTIONS}
# A Grades' status: "graded", or "<one of these>: why"; a gradebook row may add "; <a note>".
GRADED, TIMED_OUT, UNREADABLE, GRADER_FAILED = "graded", "timed out", "unreadable", "grader failed"
GONE = "no longer in the class folder"  # the note of a row whose notebook has gone


def counts(status):
    """Whether a gradebook row's score is the student's grade: graded in full, until its time ran
    out, or a file that is no notebook (0), and its notebook still in the class folder."""
    return re.split("[:;]", status)[0] in (GRADED, TIMED_OUT, UNREADABLE) and GONE not in status


@dataclass
class FunctionResult:
    """One graded function: how many checks, and every one that failed with why."""
    name: str
    checks: int
    failures: list  # [(check, reason)], in the plan's order
    checks_in_order: list = None  # every check's name

    @property
    def passed(self):
        return not self.failures

    @property
    def reason(self):
        """The first failure's reason (it names the function), or None."""
        return self.failures[0][1] if self.failures else None

    def earned(self, points, partial_credit=False):
        """The points it earns of `points`: all or nothing, or with `partial_credit` the share
        of its checks that pass, rounded to two decimals."""
        if partial_credit:
            return round(points * (self.checks - len(self.failures)) / self.checks, 2)
        return points if self.passed else 0

    def line(self):
        """'PASS  name: N checks' or 'FAIL  name: k of N checks fail; first: check: reason'."""
        if self.passed:
            return f"PASS  {self.name}: {self.checks} checks"
        check, reason = self.failures[0]
        return (f"FAIL  {self.name}: {len(self.failures)} of {self.checks} checks fail; first: "
                f"{check_id(self.name, check)}: {reason}")


def check_id(function, check):
    """The graded test's name, as pytest prints it."""
    return f"test_{function}[{check}]"


@dataclass
class Grades:
    """{function: {check name: None if it passed, else why not}}, the seed of the run, and
    whether it was graded in full ("graded") or why not."""
    seed: int
    results: dict
    status: str = GRADED

    def __post_init__(self):
        """Reasons and status as one printable line each, whoever made them (a worker's words
        reach them; so does a file name, or a gradebook read back): wire.plain_text."""
        self.results = {name: {check: None if reason is None else plain_text(reason)
                               for check, reason in checks.items()}
                        for name, checks in self.results.items()}
        self.status = plain_text(self.status)

    def function(self, name):
        checks = self.results[name]
        return FunctionResult(name, len(checks), [(check, reason) for check, reason
                                                  in checks.items() if reason is not None],
                              list(checks))

    def summary(self):
        """A FunctionResult for each graded function, in the notebook's order."""
        return [self.function(name) for name in GRADED_FUNCTIONS]

    def passing(self):
        return sum(result.passed for result in self.summary())

    def points(self, points=None, partial_credit=False):
        """{function: points earned} with `points` ({function: points}, default DEFAULT_POINTS)."""
        points = points or DEFAULT_POINTS
        return {result.name: result.earned(points[result.name], partial_credit)
                for result in self.summary()}

    def score(self, points=None, partial_credit=False):
        return round(sum(self.points(points, partial_credit).values()), 2)

    def total_line(self):
        return f"{self.passing()}/{len(GRADED_FUNCTIONS)} graded functions pass"

    def seed_line(self):
        return f"hidden inputs drawn from seed {self.seed} (--seed {self.seed} repeats them)"
