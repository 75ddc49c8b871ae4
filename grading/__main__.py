"""Course tools for graders: `python -m grading release|grade-all|gradescope ...` (README.md)."""
import argparse
import sys
from pathlib import Path

from grading.gradebook import GraderChanged, grade_all
from grading.gradescope import write_bundle
from grading.notebook import GRADED_FUNCTIONS
from grading.release import write_release


TIME_LIMIT_HELP = ("seconds each stage of a graded function may take (its cell, each call); the "
                   "function in all: this times (its calls + 2)")


def points(text):
    """'compute_content_cost=20,gram_matrix=10,...' -> {name: points}, every function once."""
    try:
        given = {name.strip(): float(value) for name, value in
                 (part.split("=") for part in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError("write points as name=number,name=number,...") from None
    if set(given) != set(GRADED_FUNCTIONS):
        raise argparse.ArgumentTypeError(f"give points for each of {', '.join(GRADED_FUNCTIONS)}")
    return given


def main(argv=None):
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
    everyone.add_argument("--time-limit", type=float, default=60, help=TIME_LIMIT_HELP)
    everyone.add_argument("--memory-limit", type=int, default=4096,
                          help="MB one graded function's worker may use")
    everyone.add_argument("--timeout", type=float, default=900,
                          help="seconds one whole submission may take")
    everyone.add_argument("--seed", type=int, default=None,
                          help="one seed of hidden inputs for all (default: fresh for each)")
    bundle = commands.add_parser(
        "gradescope", help="write Gradescope's autograder zip",
        description="The zip for a Gradescope 'Zip file upload' autograder (see README.md).")
    bundle.add_argument("zip", type=Path, help="where to write it, e.g. autograder.zip")
    bundle.add_argument("--points", type=points, default=None,
                        help="points per function (default: equal shares of 100)")
    bundle.add_argument("--seconds", type=float, default=None,
                        help="seconds one submission's grading may take in all (default 480)")
    bundle.add_argument("--time-limit", type=float, default=None,
                        help=TIME_LIMIT_HELP + " (default 60)")
    args = parser.parse_args(argv)

    if args.command == "gradescope":
        write_bundle(args.zip, points=args.points, seconds=args.seconds,
                     time_limit=args.time_limit)
        print(f"wrote {args.zip}: upload it as a Gradescope autograder (Zip file upload)")
    elif args.command == "release":
        try:
            write_release(args.solution, args.release)
        except (OSError, ValueError) as problem:
            parser.error(str(problem))
        print(f"wrote {args.release}")
    else:
        if not args.submissions.is_dir():
            parser.error(f"{args.submissions} is not a folder")
        try:
            grade_all(args.submissions, args.out, args.jobs, args.force, args.time_limit,
                      args.memory_limit, args.timeout, args.seed)
        except GraderChanged as problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
