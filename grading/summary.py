"""The class at a glance, beside the gradebook (grades.csv: grades.summary.md and .png): the
score distribution, the pass rate of every function and every check, and the most common failure
reasons, numbers and quoted names masked so that the same mistake groups together."""
import collections
import io
import re
import statistics

from grading.cells import write_whole
from grading.feedback import text
from grading.notebook import GRADED_FUNCTIONS
from grading.results import check_id

MASKS = [(re.compile(r"'[^']*'|\"[^\"]*\""), "'…'"),  # quoted names and texts
         (re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?"), "N")]  # every number
BINS = 10  # the distribution's bars: tenths of the maximum
COMMON_REASONS = 10


def masked(reason):
    for pattern, mask in MASKS:
        reason = pattern.sub(mask, reason)
    return " ".join(reason.split())


def common_reasons(grades_list):
    """[(masked reason, how many submissions it hit, one of them as it was)], most hit first."""
    hit, example = collections.Counter(), {}
    for grades in grades_list:
        reasons = {masked(reason): reason for result in grades.summary()
                   for _, reason in result.failures}
        hit.update(reasons.keys())
        for key, reason in reasons.items():
            example.setdefault(key, reason)
    return [(key, count, example[key]) for key, count in hit.most_common(COMMON_REASONS)]


def distribution(scores, maximum):
    """[(label, count)]: tenths of `maximum`, the last one closed (full marks)."""
    counts = [0] * BINS
    for score in scores:
        counts[min(int(score / maximum * BINS), BINS - 1) if maximum else 0] += 1
    width = maximum / BINS
    return [(f"{i * width:g} to {(i + 1) * width:g}", count) for i, count in enumerate(counts)]


def pass_rates(grades_list):
    """({function: passed count}, {(function, check): passed count})."""
    functions, checks = collections.Counter(), collections.Counter()
    for grades in grades_list:
        for name, results in grades.results.items():
            functions[name] += all(reason is None for reason in results.values())
            for check, reason in results.items():
                checks[name, check] += reason is None
    return functions, checks


def summary_markdown(grades_list, points, partial_credit, not_graded):
    """The summary of every graded submission (`grades_list`); `not_graded` submissions had none."""
    maximum = sum(points.values())
    scores = [grades.score(points, partial_credit) for grades in grades_list]
    count = len(grades_list)
    lines = ["# The class at a glance", "",
             f"{count} submissions graded, {not_graded} not graded (see the gradebook's status). "
             f"Points: {', '.join(f'{name} {value:g}' for name, value in points.items())}"
             f"{', partial credit' if partial_credit else ', all or nothing per function'}.", ""]
    if not count:
        return "\n".join(lines + ["Nothing graded yet.", ""])
    lines += [f"Score: mean {statistics.mean(scores):.2f}, median {statistics.median(scores):g}, "
              f"lowest {min(scores):g}, highest {max(scores):g} of {maximum:g}.", "",
              "## Score distribution", "",
              "Each range holds the scores from its first number up to its second, the second "
              "itself only in the last (full marks).", "",
              "| score | submissions | |", "|---|---|---|"]
    lines += [f"| {label} | {n} | {'#' * n} |" for label, n in distribution(scores, maximum)]
    functions, checks = pass_rates(grades_list)
    lines += ["", "## Pass rate of each function", "", "| function | pass | rate |",
              "|---|---|---|"]
    lines += [f"| {name} | {functions[name]} of {count} | {functions[name] / count:.0%} |"
              for name in GRADED_FUNCTIONS]
    lines += ["", "## Pass rate of each check", "", "| check | pass | rate |", "|---|---|---|"]
    lines += [f"| {check_id(name, check)} | {passed} of {count} | {passed / count:.0%} |"
              for (name, check), passed in checks.items()]
    lines += ["", "## Most common failure reasons", "",
              "Numbers (N) and quoted names ('…') are masked: one mistake, one line.", "",
              "| students | reason (masked) | for example |", "|---|---|---|"]
    lines += [f"| {n} | {text(key)} | {text(' '.join(example.split()))} |"
              for key, n, example in common_reasons(grades_list)]
    return "\n".join(lines) + "\n"


def summary_picture(grades_list, points, partial_credit):
    """PNG bytes: the score distribution and each check's pass rate, side by side."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    maximum = sum(points.values())
    scores = [grades.score(points, partial_credit) for grades in grades_list]
    _, checks = pass_rates(grades_list)
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 6), width_ratios=(1, 1.4))
    left.hist(scores, bins=BINS, range=(0, maximum or 1), color="tab:blue", edgecolor="white")
    left.set(title=f"Scores ({len(scores)} submissions)", xlabel=f"points of {maximum:g}",
             ylabel="submissions")
    left.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # whole students
    labels = [check_id(name, check) for name, check in checks]
    rates = [100 * passed / max(len(grades_list), 1) for passed in checks.values()]
    right.barh(labels[::-1], rates[::-1], color="tab:green")
    right.set(title="Checks passed", xlabel="% of submissions", xlim=(0, 100))
    right.tick_params(axis="y", labelsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def write_summary(gradebook_path, grades_list, points, partial_credit, not_graded):
    """grades.summary.md and grades.summary.png beside `gradebook_path`; (md path, png path)."""
    stem = gradebook_path.with_suffix("")
    markdown, picture = stem.with_name(stem.name + ".summary.md"), \
        stem.with_name(stem.name + ".summary.png")
    write_whole(markdown, summary_markdown(grades_list, points, partial_credit, not_graded))
    write_whole(picture, summary_picture(grades_list, points, partial_credit))
    return markdown, picture
