"""Course tools for graders: `python -m grading release|grade-all|gradescope|export ...`
(README.md; docs/grading.md)."""
import argparse
import sys
from pathlib import Path

from grading.gradebook import GraderChanged, grade_all, read_rows
from grading.gradescope import DEFAULTS, write_bundle
from grading.limits import LIMITS, TIME_LIMIT_HELP, Limits
from grading.lms import LmsFileError, export_canvas, export_moodle
from grading.notebook import GRADED_FUNCTIONS
from grading.release import write_release


def points(text):
    """'compute_content_cost=20,gram_matrix=10,...' -> {name: points}, every function once."""
    try:
        given = {name.strip(): float(value) for name, value in
                 (part.split("=") for part in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError("write points as name=number,name=number,...") from None
    if set(given) != set(GRADED_FUNCTIONS):
        raise argparse.ArgumentTypeError(f"give points for each of {', '.join(GRADED_FUNCTIONS)}")
    if any(value < 0 for value in given.values()) or not sum(given.values()):
        raise argparse.ArgumentTypeError("points are numbers of 0 or more, not all 0")
    return {name: given[name] for name in GRADED_FUNCTIONS}


POINTS_HELP = "points per function, name=N,... (default: equal shares of 100)"
PARTIAL_HELP = ("a function earns the share of its points that its checks pass (default: all or "
                "nothing)")


def command_line():
    """The parser of `python -m grading`'s commands and options."""
    parser = argparse.ArgumentParser(prog="python -m grading", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    release = commands.add_parser(
        "release", help="write the notebook students receive",
        description="Every START/END CODE HERE block emptied to placeholders, outputs cleared.")
    release.add_argument("solution", type=Path, help="the complete notebook")
    release.add_argument("release", type=Path, help="where to write the students' notebook")

    everyone = commands.add_parser(
        "grade-all", help="grade a folder of submissions into a CSV gradebook",
        description="Each submission graded by the graded tests in a process of its own.")
    everyone.add_argument("submissions", type=Path, help="folder searched for *.ipynb")
    everyone.add_argument("--out", type=Path, default=Path("grades.csv"), help="gradebook CSV")
    everyone.add_argument("--jobs", type=int, default=2, help="submissions graded at once")
    everyone.add_argument("--force", action="store_true", help="regrade those already graded")
    everyone.add_argument("--only", type=Path, default=None,
                          help="grade this one notebook (again), and no other")
    everyone.add_argument("--time-limit", type=float, default=LIMITS.time_limit,
                          help=TIME_LIMIT_HELP)
    everyone.add_argument("--memory-limit", type=int, default=LIMITS.memory_limit_mb,
                          help="MB one graded function's worker may use")
    everyone.add_argument("--timeout", type=float, default=LIMITS.submission_seconds,
                          help="seconds one whole submission may take")
    everyone.add_argument("--seed", type=int, default=None,
                          help="one seed of hidden inputs for all (default: the gradebook's, "
                               "else a fresh one); another seed than the gradebook's regrades all")
    everyone.add_argument("--points", type=points, default=None,
                          help=POINTS_HELP + "; default on a rerun: the gradebook's")
    everyone.add_argument("--partial-credit", action=argparse.BooleanOptionalAction,
                          default=None, help=PARTIAL_HELP + "; default on a rerun: the gradebook's")
    everyone.add_argument("--feedback", type=Path, default=None,
                          help="folder for one Markdown feedback file per submission")

    bundle = commands.add_parser(
        "gradescope", help="write Gradescope's autograder zip",
        description="The zip for a Gradescope 'Zip file upload' autograder (see "
                    "docs/gradescope.md).")
    bundle.add_argument("zip", type=Path, help="where to write it, e.g. autograder.zip")
    bundle.add_argument("--points", type=points, default=None, help=POINTS_HELP)
    bundle.add_argument("--partial-credit", action="store_true", default=None, help=PARTIAL_HELP)
    bundle.add_argument("--seconds", type=float, default=None,
                        help=f"seconds one submission's grading may take in all "
                             f"(default {DEFAULTS['seconds']})")
    bundle.add_argument("--time-limit", type=float, default=None,
                        help=f"{TIME_LIMIT_HELP} (default {DEFAULTS['time_limit']})")

    export = commands.add_parser(
        "export", help="carry a gradebook into Canvas's or Moodle's own file for its import",
        description="Fills the LMS's file with the gradebook's scores; every other cell is kept "
                    "byte for byte.")
    lms = export.add_subparsers(dest="lms", required=True)
    canvas = lms.add_parser("canvas", help="fill one assignment column of Canvas's gradebook "
                                           "export (Grades > Export), for Grades > Import")
    canvas.add_argument("grades", type=Path, help="the gradebook grade-all wrote")
    canvas.add_argument("--gradebook", type=Path, required=True,
                        help="the CSV Canvas exported")
    canvas.add_argument("--assignment", required=True,
                        help="the assignment's column, e.g. 'Style transfer (123456)' or its name")
    canvas.add_argument("--out", type=Path, required=True, help="the file to import in Canvas")
    moodle = lms.add_parser("moodle", help="fill Grade and Feedback comments of a Moodle "
                                           "assignment's offline grading worksheet")
    moodle.add_argument("grades", type=Path, help="the gradebook grade-all wrote")
    moodle.add_argument("--worksheet", type=Path, required=True,
                        help="the worksheet Moodle gave (Download grading worksheet)")
    moodle.add_argument("--out", type=Path, required=True, help="the file to upload in Moodle")
    return parser


def main(argv=None):
    parser = command_line()
    args = parser.parse_args(argv)

    try:
        if args.command == "gradescope":
            write_bundle(args.zip, points=args.points, seconds=args.seconds,
                         time_limit=args.time_limit, partial_credit=args.partial_credit)
            print(f"wrote {args.zip}: upload it as a Gradescope autograder (Zip file upload)")
        elif args.command == "release":
            try:
                write_release(args.solution, args.release)
            except ValueError as problem:
                parser.error(str(problem))
            print(f"wrote {args.release}")
        elif args.command == "export":
            rows = read_rows(args.grades)
            if args.lms == "canvas":
                notes = export_canvas(rows, args.gradebook, args.assignment, args.out)
            else:
                notes = export_moodle(rows, args.worksheet, args.out)
            print(f"wrote {args.out}: import it in {args.lms.capitalize()}")
            for note in notes:
                print(note)
        else:
            if not args.submissions.is_dir():
                parser.error(f"{args.submissions} is not a folder")
            limits = Limits(time_limit=args.time_limit, memory_limit_mb=args.memory_limit,
                            submission_seconds=args.timeout)
            grade_all(args.submissions, args.out, jobs=args.jobs, force=args.force,
                      limits=limits, seed=args.seed, points=args.points,
                      partial_credit=args.partial_credit, only=args.only,
                      feedback=args.feedback)
    except GraderChanged as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    except (OSError, LmsFileError) as problem:  # a file that is not what it should be
        parser.exit(2, f"{parser.prog} {args.command}: error: {problem}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
