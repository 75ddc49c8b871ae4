"""The main job, `python -m nst_utils run`: the notebook runs top to bottom with papermill in a
copy of the project with tiny VGG-19 weights, shows its progress and output as they come, takes
parameters and says what failed."""
import fcntl
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import time

import nbformat
import numpy as np
import pytest
from PIL import Image

import nst_utils
from conftest import ROOT
from nst_course import cli, convs, runner
from grading.mat_fixture import write_vgg19_mat
from grading.references import GA, J_CONTENT, J_STYLE_LAYER, J_TOTAL

NUMBER = r"(-?[\d.]+(?:e[+-]?\d+)?)"


def project_copy(folder, notebook_path, with_weights=True):
    """The files a student has, with tiny weights instead of the real ones, output/ empty."""
    shutil.copy(ROOT / "nst_utils.py", folder)
    shutil.copytree(ROOT / "nst_course", folder / "nst_course",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(notebook_path, folder / "nst_assignment.ipynb")
    shutil.copytree(ROOT / "images", folder / "images")
    (folder / "output").mkdir()
    (folder / "pretrained-model").mkdir()
    if with_weights:
        write_vgg19_mat(folder / "pretrained-model" / "imagenet-vgg-verydeep-19.mat")
    return folder


def run_main_job(project, *options):
    """`python -m nst_utils run` in `project`, as the README has it; the executed notebook."""
    finished = subprocess.run([sys.executable, "-m", "nst_utils", "run", *options], cwd=project,
                              capture_output=True, text=True, timeout=900)
    return finished, executed_notebook(project)


def run_changed_notebook(tmp_path, notebook, *options):
    """`python -m nst_utils run` of `notebook` (an nbformat notebook, changed by the test) in a
    project copy in tmp_path/project, with tiny weights: the finished process and the executed
    notebook."""
    nbformat.write(notebook, tmp_path / "student.ipynb")
    (tmp_path / "project").mkdir()
    return run_main_job(project_copy(tmp_path / "project", tmp_path / "student.ipynb"), *options)


def executed_notebook(project):
    executed = project / "output" / "nst_assignment.ipynb"
    return nbformat.read(executed, as_version=4) if executed.exists() else None


def run_in_a_terminal(project, timeout=900):
    """`python -m nst_utils run` in `project` on a pseudo-terminal 120 columns wide, as a user
    sees it: (exit status, the bytes it showed, (seconds from the start, bytes shown by then) for
    each piece as it arrived)."""
    main, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    start = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "nst_utils", "run"], cwd=project,
                               stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    shown, arrivals = b"", []
    while time.monotonic() - start < timeout:
        if not select.select([main], [], [], 1)[0]:
            continue
        try:
            chunk = os.read(main, 1 << 16)
        except OSError:  # the other side closed: every process writing to it has ended
            break
        shown += chunk
        arrivals.append((time.monotonic() - start, len(shown)))
    os.close(main)
    return process.wait(timeout=60), shown, arrivals


def arrived(shown, arrivals, text):
    """Seconds from the start until `text` (its first occurrence) had reached the terminal."""
    end = shown.index(text.encode()) + len(text.encode())
    return next(seconds for seconds, received in arrivals if received >= end)


def cell_number(notebook_path, starts_with):
    """The 1-based number of the notebook's first cell whose source starts so."""
    cells = nbformat.read(notebook_path, as_version=4).cells
    return 1 + next(i for i, cell in enumerate(cells) if cell.source.startswith(starts_with))


def failed_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"
            and any(out.get("output_type") == "error" for out in cell.get("outputs", []))]


def printed_text(notebook):
    return "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for output in cell.get("outputs", []) if output.get("name") == "stdout")


def stream_text(notebook):
    """Everything the cells printed, stdout and stderr."""
    return "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for output in cell.get("outputs", []) if output.get("output_type") == "stream")


# TensorFlow's C++ log lines (I/W/E/F, a date, a time), absl's notice about them, any ERROR
ALARMING = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:|absl::InitializeLog|ERROR")


def alarming_lines(text):
    """The lines of `text` a student would read as an error that is not theirs."""
    return [line for line in re.split(r"[\r\n]+", text) if ALARMING.search(line)]


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.mark.slow
def test_main_job_runs_notebook_end_to_end_showing_progress_as_it_comes(tmp_path, notebook_path):
    untouched = {name: listing(ROOT / name) for name in ("output", "pretrained-model")}
    project = project_copy(tmp_path, notebook_path)
    source = (project / "nst_assignment.ipynb").read_bytes()
    status, shown, arrivals = run_in_a_terminal(project)
    terminal = shown.decode("utf-8", errors="replace")
    assert status == 0, terminal[-3000:]
    assert (project / "nst_assignment.ipynb").read_bytes() == source  # the run writes elsewhere
    notebook = executed_notebook(project)

    # on the terminal, as they come: what the run does, the bar over the cells, what cells print
    cells = len(notebook.cells)
    started = ("Running nst_assignment.ipynb with papermill; the executed copy goes to "
               "output/nst_assignment.ipynb.\r\n")
    assert started in terminal and f"| {cells}/{cells} [" in terminal
    bar = "nst_assignment.ipynb:   0%|"
    assert arrived(shown, arrivals, started) <= arrived(shown, arrivals, bar)
    for line in ("\u2713 J_content matches", "Iteration 0 :", "Iteration 180 :"):
        assert line in terminal
    assert terminal.rstrip().endswith(
        "Ran nst_assignment.ipynb: the executed notebook is output/nst_assignment.ipynb.")
    # section 4's first report reached the terminal while section 5 still had 200 steps to go
    assert arrived(shown, arrivals, "Iteration 0 :") < arrived(shown, arrivals, "Ran ") - 1

    text = printed_text(notebook)
    np.testing.assert_allclose(float(re.search(r"J_content = " + NUMBER, text)[1]), J_CONTENT,
                               rtol=1e-5)
    np.testing.assert_allclose(float(re.search(r"J_style_layer = " + NUMBER, text)[1]),
                               J_STYLE_LAYER, rtol=1e-5)
    np.testing.assert_allclose(float(re.search(r"\bJ = " + NUMBER, text)[1]), J_TOTAL, rtol=1e-12)
    ga_text = re.search(r"GA = (\[\[.*?\]\])", text, re.DOTALL)[1]
    np.testing.assert_allclose(np.array(re.findall(NUMBER, ga_text), float).reshape(3, 3),
                               GA, rtol=1e-5)
    assert text.count("\u2713") == 4 and "\u2717" not in text  # the four verdicts: all ticks
    assert alarming_lines(stream_text(notebook)) == [] and alarming_lines(terminal) == []
    # the start G: the content image at reduced contrast under light noise, as section 4 says
    content, noise = map(float, re.search(r"standard deviation of the content part: ([\d.]+), "
                                          r"of the noise part: ([\d.]+)", text).groups())
    assert content > 2 * noise and 6.5 < noise < 7.5  # noise: 0.6 * 40 / sqrt(12) = 6.9
    assert float(re.search(r"correlation of the start with the content image: ([\d.]+)",
                           text)[1]) > 0.85
    # section 4 with the course pair, then section 5 with "your own" pair
    assert re.findall(r"Iteration (\d+) :", text) == [str(i) for i in range(0, 200, 20)] * 2

    run_files = {f"{i}.png" for i in range(0, 200, 20)} | {"generated_image.jpg"}
    figure_files = {"summary.png", "costs.png", "iterations.png"}
    assert {p.name for p in (project / "output").iterdir()} == run_files | figure_files | {
        "my_images", "nst_assignment.ipynb"}
    assert {p.name for p in (project / "output" / "my_images").iterdir()} == run_files | {
        "summary.png", "costs.png"}
    for name in figure_files:
        with Image.open(project / "output" / name) as figure:
            assert figure.format == "PNG" and 400 <= figure.width <= 2000, name
    figures = [output for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.get("outputs", []) if "image/png" in output.get("data", {})]
    assert len(figures) == 7  # inputs, noisy start, summary, costs, contact sheet, section 5: two
    assert {name: listing(ROOT / name) for name in untouched} == untouched


@pytest.mark.slow
def test_parameters_set_both_runs_and_section_5s_pictures(tmp_path, notebook_path):
    project = project_copy(tmp_path, notebook_path)
    photo = tmp_path / "elsewhere" / "my photo.png"  # not in images/, a space in its name
    photo.parent.mkdir()
    Image.new("RGB", (640, 480), (200, 60, 30)).save(photo)
    source = (project / "nst_assignment.ipynb").read_bytes()
    started = time.monotonic()
    finished, notebook = run_main_job(project, "-p", "num_iterations", "21",
                                      "-p", "my_iterations", "3",
                                      "-p", "my_content_path", str(photo))
    seconds = time.monotonic() - started
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.startswith(
        f"Running nst_assignment.ipynb with papermill, num_iterations = 21, my_iterations = 3, "
        f"my_content_path = '{photo}'; ")
    text = printed_text(notebook)
    # section 4: 21 steps (reports at 0 and 20); section 5: 3 steps (a report at 0)
    assert re.findall(r"Iteration (\d+) :", text) == ["0", "20", "0"]
    assert f"content: {photo}\nstyle: images/swirling_brushstrokes.jpg\niterations: 3" in text
    assert {p.name for p in (project / "output" / "my_images").iterdir()} == {
        "0.png", "generated_image.jpg", "summary.png", "costs.png"}
    assert (project / "nst_assignment.ipynb").read_bytes() == source
    print(f"parameterised run: {seconds:.0f} s")


CONV_DTYPES = ('print("conv dtypes:", sorted({op.get_attr("T").name for op in '
               'tf.get_default_graph().get_operations() if op.type == "Conv2D"}))')


@pytest.mark.slow
@pytest.mark.parametrize("forced", [False, True], ids=["no native bfloat16", "forced"])
def test_conv_precision_parameter_sets_both_sections(tmp_path, notebook_path, forced):
    """-p conv_precision bfloat16 on a processor without bfloat16 units: the run says so once
    and both sections run float32; with NST_FORCE_BFLOAT16=1 (as where the units are), both
    sections' convs run in bfloat16. A cell after each section's run prints its convs' dtypes."""
    notebook = nbformat.read(notebook_path, as_version=4)
    cells = notebook.cells
    section_4_run = next(i for i, c in enumerate(cells) if c.source.startswith("with record_costs"))
    cells.insert(section_4_run + 1, nbformat.v4.new_code_cell(CONV_DTYPES))
    cells.append(nbformat.v4.new_code_cell(CONV_DTYPES))
    nbformat.write(notebook, tmp_path / "student.ipynb")
    (tmp_path / "project").mkdir()
    project = project_copy(tmp_path / "project", tmp_path / "student.ipynb")
    environment = dict(os.environ)
    environment.pop(convs.FORCE_BFLOAT16, None)
    if forced:
        environment[convs.FORCE_BFLOAT16] = "1"
    elif convs.BFLOAT16_CPU_FLAGS & convs._cpu_flags():
        pytest.skip("this processor has bfloat16 units")
    finished = subprocess.run(
        [sys.executable, "-m", "nst_utils", "run", "-p", "num_iterations", "1", "-p",
         "my_iterations", "1", "-p", "conv_precision", "bfloat16"], cwd=project, env=environment,
        capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stderr[-3000:]
    executed = executed_notebook(project)
    text = printed_text(executed)
    said = text.count("CONFIG.CONV_PRECISION is 'bfloat16', but this processor has no native "
                      "bfloat16")
    dtypes = re.findall(r"conv dtypes: (.*)", text)
    if forced:
        assert said == 0 and dtypes == ["['bfloat16']"] * 2
    else:
        assert said == 1 and dtypes == ["['float32']"] * 2
    assert text.count("\u2713") == 4 and alarming_lines(stream_text(executed)) == []


@pytest.mark.slow
def test_after_section_5_section_4_keeps_its_output_folder_and_can_start_again(tmp_path,
                                                                              notebook_path):
    """Section 5 writes to output/my_images/ only while it runs, and leaves no interactive
    session open: section 4's cells, run again afterwards, write to output/ and print no ERROR."""
    notebook = nbformat.read(notebook_path, as_version=4)
    cells = notebook.cells
    session_cell = next(c for c in cells if c.cell_type == "code"
                        and "sess = tf.InteractiveSession()" in c.source)
    cells += [nbformat.v4.new_code_cell('print(f"output folder: {CONFIG.OUTPUT_DIR}")'),
              nbformat.v4.new_code_cell(session_cell.source),
              nbformat.v4.new_code_cell('print(f"open: {not sess._closed}")')]
    finished, executed = run_changed_notebook(tmp_path, notebook, "-p", "num_iterations", "1",
                                              "-p", "my_iterations", "1")
    assert finished.returncode == 0, finished.stderr[-3000:]
    text = printed_text(executed)
    assert "output folder: output/\nopen: True\n" in text
    assert alarming_lines(stream_text(executed)) == []
    assert alarming_lines(finished.stdout) == [] and alarming_lines(finished.stderr) == []
    assert {p.name for p in (tmp_path / "project" / "output" / "my_images").iterdir()} == {
        "0.png", "generated_image.jpg", "summary.png", "costs.png"}


@pytest.mark.slow
def test_a_broken_weights_file_names_the_failed_cell_and_the_download_command(tmp_path,
                                                                              notebook_path):
    project = project_copy(tmp_path, notebook_path, with_weights=False)
    (project / "pretrained-model" / "imagenet-vgg-verydeep-19.mat").write_bytes(b"cut short")
    finished, notebook = run_main_job(project)
    assert finished.returncode == 1
    model_cell = cell_number(notebook_path, "CONFIG.CONV_PRECISION = conv_precision")
    message = finished.stderr.splitlines()[-2:]
    assert message[0].startswith(f"The run failed: cell {model_cell} (section 2 - Transfer "
                                 f"learning: ")
    assert "): ValueError: 'pretrained-model/imagenet-vgg-verydeep-19.mat' could not be read " in (
        message[0]) and "It may be truncated or corrupt. Download it again from " in message[0]
    assert message[1] == ("The notebook as far as it ran, with the full traceback: "
                          "output/nst_assignment.ipynb")
    assert "Traceback" not in finished.stderr
    failed = failed_cells(notebook)
    assert len(failed) == 1 and "load_vgg_model(CONFIG.VGG_MODEL)" in failed[0].source


@pytest.mark.slow
def test_sections_4_and_5_run_again_in_any_order_print_no_error(tmp_path, notebook_path):
    """As a student reruns after fixing a function: section 4 twice (the second time for fewer
    steps), section 5 twice, then section 4 after 5. No ERROR anywhere, every run trains, and
    the contact sheet after a short run shows its own picture only."""
    notebook = nbformat.read(notebook_path, as_version=4)
    cells = notebook.cells
    start = next(i for i, c in enumerate(cells) if c.cell_type == "code"
                 and "sess = tf.InteractiveSession()" in c.source)
    sheet = next(i for i, c in enumerate(cells) if c.source.startswith("plot_iterations()"))
    section_4 = [c.source for c in cells[start:sheet + 1] if c.cell_type == "code"]
    section_5 = [c.source for c in cells if c.source.startswith(("# Your pictures", "sess.close()"))]
    shown = ('print("contact sheet:", [ax.get_title() for ax in plot_iterations().axes '
             'if ax.get_title()])')
    # after section 4's 41 steps: section 4 again, for 1 step; then the notebook's section 5
    cells[sheet + 1:sheet + 1] = [nbformat.v4.new_code_cell(source)
                                  for source in ["num_iterations = 1", *section_4, shown]]
    cells += [nbformat.v4.new_code_cell(source) for source in [*section_5, *section_4, shown]]
    finished, executed = run_changed_notebook(tmp_path, notebook, "-p", "num_iterations", "41",
                                              "-p", "my_iterations", "1")
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert alarming_lines(stream_text(executed)) == []
    assert alarming_lines(finished.stdout) == [] and alarming_lines(finished.stderr) == []
    text = printed_text(executed)
    # section 4 (41 steps), 4 again, 5, 5 again, 4 again (1 step each): all trained
    assert re.findall(r"Iteration (\d+) :", text) == ["0", "20", "40", "0", "0", "0", "0"]
    assert re.findall(r"contact sheet: (.*)", text) == ["['iteration 0']"] * 2


@pytest.mark.slow
def test_bad_image_path_given_as_a_parameter_names_section_5s_cell(tmp_path, notebook_path):
    project = project_copy(tmp_path, notebook_path)
    finished, notebook = run_main_job(project, "-p", "num_iterations", "1",
                                      "-p", "my_style_path", "images/no_such_painting.jpg")
    assert finished.returncode == 1
    run_cell = cell_number(notebook_path, "sess.close()")
    assert finished.stderr.splitlines()[-2] == (
        f"The run failed: cell {run_cell} (section 5 - Try your own images): FileNotFoundError: "
        f"No image file at 'images/no_such_painting.jpg'. Check the path (it is relative to "
        f"{project}).")
    assert "Traceback" not in finished.stderr
    assert "load_image(my_style_path)" in failed_cells(notebook)[0].source


@pytest.mark.slow
def test_exception_in_a_students_cell_names_it_and_the_copy_stops_there(tmp_path,
                                                                        notebook_path):
    notebook = nbformat.read(notebook_path, as_version=4)
    student_cell = cell_number(notebook_path, "### START CODE HERE ### (1 line)\nJ = total_cost(")
    cell = notebook.cells[student_cell - 1]
    cell.source = cell.source.replace("J_style,", "J_styel,")  # the student's typo
    nbformat.write(notebook, tmp_path / "student.ipynb")
    (tmp_path / "project").mkdir()
    project = project_copy(tmp_path / "project", tmp_path / "student.ipynb")
    finished, executed = run_main_job(project)
    assert finished.returncode == 1
    assert finished.stderr.splitlines()[-2] == (
        f"The run failed: cell {student_cell} (section 4 - Solving the optimisation problem): "
        f"NameError: name 'J_styel' is not defined")
    assert "Traceback" not in finished.stderr
    code_cells = [c for c in executed.cells if c.cell_type == "code"]
    stop = next(i for i, c in enumerate(code_cells) if "J_styel" in c.source)
    assert failed_cells(executed) == [code_cells[stop]]
    assert all(c.execution_count is None for c in code_cells[stop + 1:])  # where it stopped


def test_run_outside_the_project_folder_says_where_to_run_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run"], nst_utils.CONFIG) == 1
    assert capsys.readouterr().err == (
        f"The run did not start: there is no nst_assignment.ipynb in {tmp_path}: run this "
        f"command in the project folder.\n")


@pytest.mark.parametrize("name, value, message", [
    ("num_iterations", "0", "-p num_iterations needs a whole number of at least 1, not '0'."),
    ("my_iterations", "many", "-p my_iterations needs a whole number of at least 1, not 'many'."),
    ("num_iteration", "20", "-p num_iteration: the notebook has no such parameter; its "
                            "parameters are num_iterations, my_content_path, my_style_path, "
                            "my_iterations, conv_precision."),
    ("conv_precision", "float16", "-p conv_precision is float32 or bfloat16, not 'float16'.")])
def test_run_refuses_a_bad_parameter_before_starting(tmp_path, monkeypatch, capsys,
                                                     notebook_path, name, value, message):
    shutil.copy(notebook_path, tmp_path / "nst_assignment.ipynb")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "-p", name, value], nst_utils.CONFIG) == 1
    assert capsys.readouterr().err == f"The run did not start: {message}\n"
    assert not (tmp_path / "output").exists()


def test_parameter_values_take_the_type_of_the_notebooks_defaults(notebook_path):
    assert runner.notebook_parameters(notebook_path, [
        ("num_iterations", "20"), ("my_content_path", "2024.jpg"), ("my_style_path", "1000"),
        ("my_iterations", "7"), ("conv_precision", "bfloat16")]) == {
        "num_iterations": 20, "my_content_path": "2024.jpg", "my_style_path": "1000",
        "my_iterations": 7, "conv_precision": "bfloat16"}
