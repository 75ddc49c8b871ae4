"""Markdown for a student, from their Grades: every function with its points, every check with
pass or fail and the reason pytest prints, the seed, and the command that repeats the grading.
grade-all writes one file per submission (--feedback DIR); Gradescope shows function_markdown."""
import re
import shlex

from grading.results import check_id

SPECIAL = re.compile(r"([\\`*_\[\]<>|~&])")  # what marks up text inside a line
LINE_START = re.compile(r"^(\s*)([#>+=-]|\d+[.)])", re.MULTILINE)  # what starts a block


def text(value):
    """Plain text that Markdown shows as it is."""
    return LINE_START.sub(lambda m: m[1] + "\\" + m[2], SPECIAL.sub(r"\\\1", value))


def code_block(reason):
    """A reason as an indented code block: shown letter for letter, never read as Markdown."""
    return "\n".join("      " + line for line in (reason.splitlines() or [""]))


def function_markdown(result):
    """Every check of one FunctionResult: 'All N checks pass.' or each check, failing ones with
    their reason."""
    if result.passed:
        return f"All {result.checks} checks pass."
    reasons = dict(result.failures)
    lines = [f"{len(reasons)} of {result.checks} checks fail:", ""]
    for check in result.checks_in_order:
        if check in reasons:
            lines += [f"- FAIL `{check_id(result.name, check)}`:", "", code_block(reasons[check]),
                      ""]
        else:
            lines.append(f"- pass `{check_id(result.name, check)}`")
    return "\n".join(lines).rstrip() + "\n"


def repeat_command(notebook, seed, limits):
    """The one command that repeats a grading (within `limits`) on a machine with the course's
    files."""
    return (f"python -m pytest tests -m graded --notebook={shlex.quote(notebook)} --seed {seed} "
            f"--time-limit {limits.time_limit:g} --memory-limit {limits.memory_limit_mb}")


def feedback_markdown(grades, title, points, partial_credit, command):
    """The feedback file for one submission: `title` names it, `command` repeats its grading."""
    earned = grades.points(points, partial_credit)
    rule = ("partial credit: a function earns the share of its checks that pass" if partial_credit
            else "a function earns its points when all its checks pass")
    lines = [f"# {text(title)}", "",
             f"**{grades.score(points, partial_credit):g} of {sum(points.values()):g} points** "
             f"({rule}). Status: {text(grades.status)}.", "",
             "| function | points | checks that pass |", "|---|---|---|"]
    for result in grades.summary():
        lines.append(f"| {result.name} | {earned[result.name]:g} of {points[result.name]:g} | "
                     f"{result.checks - len(result.failures)} of {result.checks} |")
    for result in grades.summary():
        lines += ["", f"## {result.name}: {earned[result.name]:g} of {points[result.name]:g} "
                      f"points", "", function_markdown(result).rstrip()]
    lines += ["", "## Repeat this grading", "",
              f"The hidden inputs were drawn from seed {grades.seed}. In the course's folder "
              f"(with its requirements installed), this grades your notebook with the same inputs "
              f"and limits:", "", "    " + command, ""]
    return "\n".join(lines)
