"""Every command the README, docs/ and pretrained-model/README.md give still runs as written, and
every relative link of the project's Markdown pages points to a file that exists.

The commands are the lines of their fenced code blocks (```bash, ```sh, ```console, or plain ```
with shell lines; ```text blocks are output and are left alone). Each is checked as cheaply as
it can be without side effects:
- `python -m grading ...` parses with grading's own parser (an unknown option, a missing
  argument or a bad value fails);
- `python -m nst_utils ...` parses with nst_course.cli's parser;
- `python -m pytest ...` collects tests with its options and markers (`--collect-only`), and
  names the tests folder when it writes `--notebook PATH` bare;
- `python SCRIPT ...` names a script that exists and takes each option given;
- a line ending in `--help` really runs, and must exit 0.
Other programs (pip, jupyter, papermill, docker, unzip, ...) are not checked."""
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS, ROOT / "pretrained-model" / "README.md"]
SHELL_BLOCKS = {"bash", "sh", "shell", "console", ""}
FENCE = re.compile(r"^```(\w*)\s*$")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\S*$")  # NAME=value before a program
# programs a plain ``` block's line may start with to count as a shell line
PROGRAMS = ("python", "pip", "jupyter", "papermill", "docker", "unzip", "mkdir", "cp", "cat",
            "less", "bash", "md5sum", "git", "cd")


def code_blocks(page):
    """[(info string, first line number, [lines])] of the page's fenced code blocks."""
    blocks, lines, info, start = [], None, None, None
    for number, line in enumerate(page.read_text().splitlines(), 1):
        match = FENCE.match(line.strip())
        if lines is None and match:
            lines, info, start = [], match.group(1), number + 1
        elif lines is not None and line.strip() == "```":
            blocks.append((info, start, lines))
            lines = None
        elif lines is not None:
            lines.append(line)
    assert lines is None, f"{page.name}: a code block opened at line {start} is never closed"
    return blocks


def commands(page):
    """[(where, argv)] of every command line in the page's shell blocks: continuations joined,
    comments and a console's `$ ` dropped, `a && b` as two commands, NAME=value prefixes dropped."""
    found = []
    for info, start, lines in code_blocks(page):
        if info not in SHELL_BLOCKS:
            continue
        pending, first = "", None
        for number, line in enumerate(lines, start):
            text = line.strip()
            if info == "console" and first is None:
                if not text.startswith("$ "):
                    continue  # a console's output
                text = text[2:]
            first = number if first is None else first
            if text.endswith("\\"):
                pending += text[:-1] + " "
                continue
            words, where = shlex.split(pending + text, comments=True), first
            pending, first = "", None
            if not words or (info == "" and words[0] not in PROGRAMS):
                continue  # an empty line, or a plain block's prose or output
            while words:
                argv = words[:words.index("&&")] if "&&" in words else words
                words = words[len(argv) + 1:]
                while argv and ASSIGNMENT.match(argv[0]):
                    argv = argv[1:]
                if argv:
                    found.append((f"{page.relative_to(ROOT)}:{where}", argv))
    return found


DOCUMENTED = [command for page in PAGES for command in commands(page)]


def module_commands(module, help=False):
    """The documented `python -m MODULE ...` commands, as (where, arguments after the module);
    those asking for --help only if `help` (they run for real instead)."""
    return [(where, argv[3:]) for where, argv in DOCUMENTED
            if argv[:3] == ["python", "-m", module] and (argv[-1] == "--help") == help]


def ids(commands):
    return [f"{where} {' '.join(args)}"[:90] for where, args in commands]


def test_the_readme_fits_on_one_page():
    size = len((ROOT / "README.md").read_text())
    assert size <= 8000, f"README.md has {size} characters; move the details to docs/"


def test_the_readme_gives_ci_its_test_command_on_a_line_of_its_own():
    command = "pip install -r requirements.txt && python -m pytest"  # .ci/run greps this line
    assert command in (ROOT / "README.md").read_text().splitlines()
    assert command in (ROOT / ".ci" / "run").read_text()


def test_the_readme_gives_the_set_up_and_the_graders_four_commands():
    readme = [argv for where, argv in DOCUMENTED if where.startswith("README.md:")]
    firsts = {tuple(argv[:4]) for argv in readme}
    assert ("python", "-m", "nst_utils", "run") in firsts
    assert ("python", "-m", "pytest") in {tuple(argv) for argv in readme}
    assert any(argv[:5] == ["python", "-m", "pytest", "tests", "-m"] and "--notebook" in
               " ".join(argv) for argv in readme), "the grader's one-notebook command"
    for command in ("grade-all", "gradescope", "release"):
        assert ("python", "-m", "grading", command) in firsts, command


def test_the_weights_are_explained_before_the_first_run_command():
    readme = (ROOT / "README.md").read_text()
    run = readme.index("python -m nst_utils run")
    assert "imagenet-vgg-verydeep-19.mat" in readme[:run]
    assert "download" in readme[:run]


@pytest.mark.parametrize("where, args", module_commands("grading"),
                         ids=ids(module_commands("grading")))
def test_each_documented_grading_command_parses(where, args, capsys):
    from grading.__main__ import command_line
    try:
        command_line().parse_args(args)
    except SystemExit:
        pytest.fail(f"{where}: `python -m grading {' '.join(args)}` does not parse: "
                    f"{capsys.readouterr().err.strip()}")


@pytest.mark.parametrize("where, args", module_commands("nst_utils"),
                         ids=ids(module_commands("nst_utils")))
def test_each_documented_nst_utils_command_parses(where, args, capsys):
    from nst_course.cli import command_line  # nst_utils' commands since the package split
    from nst_utils import CONFIG  # their defaults

    try:
        command_line(CONFIG).parse_args(args)
    except SystemExit:
        pytest.fail(f"{where}: `python -m nst_utils {' '.join(args)}` does not parse: "
                    f"{capsys.readouterr().err.strip()}")


def notebook_parameters():
    """The names the notebook's cell tagged `parameters` sets (papermill's -p may set only those)."""
    notebook = json.loads((ROOT / "nst_assignment.ipynb").read_text())
    cell, = [cell for cell in notebook["cells"] if "parameters" in cell["metadata"].get("tags", [])]
    return set(re.findall(r"^(\w+)\s*=", "".join(cell["source"]), re.M))


RUNS = [(where, args) for where, args in module_commands("nst_utils") if args[0] == "run"]


@pytest.mark.parametrize("where, args", RUNS, ids=ids(RUNS))
def test_each_documented_run_sets_parameters_the_notebook_has(where, args):
    names = notebook_parameters()
    assert {"num_iterations", "my_content_path", "conv_precision"} <= names, names
    for flag, name, value in zip(args, args[1:], args[2:]):
        if flag in ("-p", "--parameter"):
            assert name in names, f"{where}: the notebook has no parameter {name}"
            if name.endswith("_path"):
                assert (ROOT / value).is_file(), f"{where}: no picture {value}"


# `python -m pytest` alone is the whole suite, which CI runs as written; the others are collected
PYTEST = [(where, args) for where, args in module_commands("pytest") if args]
REPORTS = ("--junitxml", "--junit-xml")  # options that write a file: pointed at a temporary one


@pytest.mark.parametrize("where, args", PYTEST, ids=ids(PYTEST))
def test_each_documented_pytest_command_collects_tests(where, args, tmp_path):
    args = [str(tmp_path / "report.xml") if before in REPORTS else
            f"{word.split('=')[0]}={tmp_path / 'report.xml'}" if word.split("=")[0] in REPORTS
            and "=" in word else word for before, word in zip([None, *args], args)]
    run = subprocess.run([sys.executable, "-m", "pytest", *args, "--collect-only", "-q",
                          "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, f"{where}: {run.stdout[-600:]}{run.stderr[-600:]}"
    assert re.search(r"^[1-9]\d* tests? collected", run.stdout, re.M), run.stdout[-600:]


BARE_NOTEBOOK = [(where, args) for where, args in PYTEST if "--notebook" in args]


@pytest.mark.parametrize("where, args", BARE_NOTEBOOK, ids=ids(BARE_NOTEBOOK))
def test_each_documented_bare_notebook_option_follows_the_tests_folder(where, args):
    """pytest reads a bare `--notebook PATH` before conftest.py adds the option; without the tests
    folder before it, a PATH outside the project fails with "unrecognized arguments"."""
    assert "tests" in args[:args.index("--notebook")], \
        f"{where}: name the tests folder before a bare --notebook, or write --notebook=PATH"


SCRIPTS = [(where, argv[1:]) for where, argv in DOCUMENTED
           if argv[0] == "python" and len(argv) > 1 and argv[1].endswith(".py")]


@pytest.mark.parametrize("where, args", SCRIPTS, ids=ids(SCRIPTS))
def test_each_documented_script_exists_and_takes_its_options(where, args):
    script = ROOT / args[0]
    assert script.is_file(), f"{where}: no script {args[0]}"
    source = script.read_text()
    for word in args[1:]:
        if word.startswith("--"):
            assert f'"{word.split("=")[0]}"' in source, f"{where}: {args[0]} has no option {word}"


HELP = [(where, argv) for where, argv in DOCUMENTED if argv[0] == "python" and argv[-1] == "--help"]


@pytest.mark.parametrize("where, argv", HELP, ids=ids(HELP))
def test_each_documented_help_command_runs(where, argv):
    run = subprocess.run([sys.executable, *argv[1:]], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, f"{where}: `{' '.join(argv)}` failed: {run.stderr[-600:]}"
    assert "usage:" in run.stdout, run.stdout[:300]


def test_every_kind_of_command_is_checked_somewhere():
    """So that a change to how the pages are read cannot make the checks above vacuous."""
    for module in ("grading", "nst_utils", "pytest"):
        assert module_commands(module), f"no documented python -m {module} command found"
    assert PYTEST and BARE_NOTEBOOK and RUNS and SCRIPTS and HELP


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def links():
    """[(page, target)] of the relative links of every Markdown page outside grading/."""
    found = []
    pages = {page for page in ROOT.glob("*/*.md") if not page.parent.name.startswith(".")}
    for page in sorted({*PAGES, *pages} - {*ROOT.glob("grading/*.md")}):
        for target in LINK.findall(page.read_text()):
            if not re.match(r"^[a-z]+:", target) and not target.startswith("#"):
                found.append((page, target))
    return sorted(set(found))


@pytest.mark.parametrize("page, target", links(),
                         ids=[f"{page.relative_to(ROOT)}->{target}" for page, target in links()])
def test_each_relative_link_points_to_a_file_that_exists(page, target):
    path = (page.parent / target.split("#")[0]).resolve()
    assert path.exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / target).resolve() for page, target in links() if page == ROOT / "README.md"}
    assert DOCS and set(DOCS) <= linked, sorted(str(page) for page in set(DOCS) - linked)
