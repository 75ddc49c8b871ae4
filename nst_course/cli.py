"""The course tools' commands: `python -m nst_utils run | download | verify`.

nst_utils.py runs main() before it imports TensorFlow, so no command imports it: download and
verify need none, and run starts it only in the notebook's kernel (papermill's).
"""
import argparse
import os
import sys

from nst_course.weights import (MIRROR, NO_DOWNLOAD, download, not_downloaded, verify_vgg19_file,
                                vgg19_url)


def command_line(config):
    """The parser of `python -m nst_utils`'s commands; `config` (nst_utils.CONFIG) gives the
    weights' path, its default."""
    parser = argparse.ArgumentParser(prog="python -m nst_utils", description="Course tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("download", help="download and check the VGG-19 weights",
                              description="Download MatConvNet's VGG-19 (about 510 MB) into "
                                          "pretrained-model/, resuming an interrupted download, "
                                          "and check it as `verify` does.")
    get.add_argument("--url", default=vgg19_url(),
                     help=f"where to download from (a mirror; default ${MIRROR} or MatConvNet)")
    get.add_argument("--to", default=config.VGG_MODEL, help="where to save it")
    check = commands.add_parser("verify", help="say which VGG-19 release a weights file is",
                                description="Say which published release of MatConvNet's "
                                            "VGG-19 a file is (by its MD5), or why it is not "
                                            "one. Exit status 0 if it can be used, else 1.")
    check.add_argument("path", nargs="?", default=config.VGG_MODEL,
                       help=f"the file to check (default: {config.VGG_MODEL})")
    run = commands.add_parser("run", help="run the whole notebook headless",
                              description="Run every cell of the assignment notebook with "
                                          "papermill, showing its output as it comes; the "
                                          "executed notebook goes to the output folder.")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                     metavar=("NAME", "VALUE"),
                     help="set one of the notebook's parameters (its settings cell at the top), "
                          "as papermill's -p does: num_iterations (section 4, 200), "
                          "my_content_path, my_style_path, my_iterations (section 5), "
                          "conv_precision (VGG-19's convs in both: float32, or bfloat16 where "
                          "the processor has it)")
    run.add_argument("--url", help=f"where to download the VGG-19 weights from if they are "
                                   f"missing (a mirror; default ${MIRROR} or MatConvNet)")
    run.add_argument("--no-download", action="store_true",
                     help=f"never download the weights (as {NO_DOWNLOAD}=1): stop if missing")
    return parser


def main(argv, config):
    """Run the command in `argv` (sys.argv[1:]) with `config` (nst_utils.CONFIG: the weights'
    path, the output folder); its exit status."""
    args = command_line(config).parse_args(argv)
    if args.command == "run":
        from nst_course.runner import run_notebook  # papermill; TensorFlow only in its kernel

        # in the environment, so that the notebook's kernel fetches (or not) as this run does
        if args.url:
            os.environ[MIRROR] = args.url
        if args.no_download:
            os.environ[NO_DOWNLOAD] = "1"
        executed = os.path.join(config.OUTPUT_DIR, "nst_assignment.ipynb")
        try:
            print(run_notebook("nst_assignment.ipynb", executed, args.parameter,
                               weights=config.VGG_MODEL))
        except ValueError as problem:
            print(f"The run did not start: {problem}", file=sys.stderr)
            return 1
        except RuntimeError as problem:
            print(f"The run failed: {problem}\nThe notebook as far as it ran, with the full "
                  f"traceback: {executed}", file=sys.stderr)
            return 1
        return 0
    try:
        if args.command == "verify":
            found, warning = verify_vgg19_file(args.path)
            print(f"'{args.path}' checked: {found}.")
        else:
            said, warning = download(args.url, args.to)
            print(said)
    except (OSError, ValueError) as problem:  # FileNotFoundError is an OSError
        if args.command == "verify":
            print(f"'{args.path}' cannot be used as the VGG-19 weights: {problem}\nGet them "
                  f"with `python -m nst_utils download` (see pretrained-model/README.md).",
                  file=sys.stderr)
        else:
            print(not_downloaded(args.url, args.to, problem), file=sys.stderr)
        return 1
    if warning:
        print(f"Warning: {warning}", file=sys.stderr)
    return 0
