"""One grading's result, and the one summary of it that every front end renders (pytest's
summary and verdicts, grade-all's gradebook row, Gradescope's results.json)."""
from dataclasses import dataclass

from grading.notebook import GRADED_FUNCTIONS


@dataclass
class FunctionResult:
    """One graded function: how many checks, which failed and why (the first one first)."""
    name: str
    checks: int
    failures: list  # [(check, reason)]

    @property
    def passed(self):
        return not self.failures

    @property
    def reason(self):
        """The first failure's reason (it names the function), or None."""
        return self.failures[0][1] if self.failures else None

    def line(self):
        """'PASS  name: N checks' or 'FAIL  name: k of N checks fail; first: check: reason'."""
        if self.passed:
            return f"PASS  {self.name}: {self.checks} checks"
        check, reason = self.failures[0]
        return (f"FAIL  {self.name}: {len(self.failures)} of {self.checks} checks fail; first: "
                f"test_{self.name}[{check}]: {reason}")


@dataclass
class Grades:
    """{function: {check name: None if it passed, else why not}}, and the seed of the run."""
    seed: int
    results: dict

    def function(self, name):
        checks = self.results[name]
        return FunctionResult(name, len(checks), [(check, reason) for check, reason
                                                  in checks.items() if reason is not None])

    def summary(self):
        """A FunctionResult for each graded function, in the notebook's order."""
        return [self.function(name) for name in GRADED_FUNCTIONS]

    def passing(self):
        return sum(result.passed for result in self.summary())

    def total_line(self):
        return f"{self.passing()}/{len(GRADED_FUNCTIONS)} graded functions pass"

    def seed_line(self):
        return f"hidden inputs drawn from seed {self.seed} (--seed {self.seed} repeats them)"
