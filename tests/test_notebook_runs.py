"""The main job, `python -m nst_utils run`: the notebook runs top to bottom with papermill in a
copy of the project with tiny VGG-19 weights, shows its output as it comes and says what failed."""
import re
import shutil
import subprocess
import sys

import nbformat
import numpy as np
import pytest
from PIL import Image

import nst_utils
from conftest import ROOT
from mat_fixture import write_vgg19_mat
from references import GA, J_CONTENT, J_STYLE_LAYER, J_TOTAL

NUMBER = r"(-?[\d.]+(?:e[+-]?\d+)?)"


def project_copy(folder, notebook_path, with_weights=True):
    """The files a student has, with tiny weights instead of the real ones, output/ empty."""
    shutil.copy(ROOT / "nst_utils.py", folder)
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
    executed = project / "output" / "nst_assignment.ipynb"
    return finished, nbformat.read(executed, as_version=4) if executed.exists() else None


def printed_text(notebook):
    return "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for output in cell.get("outputs", []) if output.get("name") == "stdout")


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.mark.slow
def test_main_job_runs_notebook_end_to_end_and_prints_reference_values(tmp_path, notebook_path):
    untouched = {name: listing(ROOT / name) for name in ("output", "pretrained-model")}
    project = project_copy(tmp_path, notebook_path)
    source = (project / "nst_assignment.ipynb").read_bytes()
    finished, notebook = run_main_job(project)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "Ran nst_assignment.ipynb: the executed notebook is output/nst_assignment.ipynb" in (
        finished.stdout)
    assert (project / "nst_assignment.ipynb").read_bytes() == source  # the run writes elsewhere

    text = printed_text(notebook)
    for line in ("\u2713 J_content matches", "Iteration 180 :"):  # the terminal shows the output
        assert line in text and line in finished.stdout
    np.testing.assert_allclose(float(re.search(r"J_content = " + NUMBER, text)[1]), J_CONTENT,
                               rtol=1e-5)
    np.testing.assert_allclose(float(re.search(r"J_style_layer = " + NUMBER, text)[1]),
                               J_STYLE_LAYER, rtol=1e-5)
    np.testing.assert_allclose(float(re.search(r"\bJ = " + NUMBER, text)[1]), J_TOTAL, rtol=1e-12)
    ga_text = re.search(r"GA = (\[\[.*?\]\])", text, re.DOTALL)[1]
    np.testing.assert_allclose(np.array(re.findall(NUMBER, ga_text), float).reshape(3, 3),
                               GA, rtol=1e-5)
    assert text.count("\u2713") == 4 and "\u2717" not in text  # the four verdicts: all ticks
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
def test_quick_run_sets_the_iterations_of_both_optimisations(tmp_path, notebook_path):
    project = project_copy(tmp_path, notebook_path)
    finished, notebook = run_main_job(project, "--iterations", "21")
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert re.findall(r"Iteration (\d+) :", printed_text(notebook)) == ["0", "20"] * 2
    assert {p.name for p in (project / "output" / "my_images").iterdir()} == {
        "0.png", "20.png", "generated_image.jpg", "summary.png", "costs.png"}


@pytest.mark.slow
def test_main_job_without_weights_names_the_failed_cell_and_the_download_command(tmp_path,
                                                                                 notebook_path):
    project = project_copy(tmp_path, notebook_path, with_weights=False)
    finished, notebook = run_main_job(project)
    assert finished.returncode == 1
    model_cell = next(i for i, cell in enumerate(nbformat.read(notebook_path, as_version=4).cells)
                      if cell.source.startswith("model = load_vgg_model(CONFIG.VGG_MODEL)"))
    message = finished.stderr.splitlines()[-2:]
    assert message[0].startswith(f"The run failed: cell {model_cell + 1} (section 2 - Transfer "
                                 f"learning: ")
    assert "): FileNotFoundError: VGG-19 weights not found at " in message[0]
    assert "`python -m nst_utils download`" in message[0]
    assert message[1] == ("The notebook as far as it ran, with the full traceback: "
                          "output/nst_assignment.ipynb")
    assert "Traceback" not in finished.stderr
    failed = [cell for cell in notebook.cells if cell.cell_type == "code"
              and any(out.get("output_type") == "error" for out in cell.get("outputs", []))]
    assert len(failed) == 1 and "load_vgg_model(CONFIG.VGG_MODEL)" in failed[0].source


def test_run_outside_the_project_folder_says_where_to_run_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert nst_utils.main(["run"]) == 1
    assert capsys.readouterr().err.startswith(
        f"The run failed: there is no nst_assignment.ipynb in {tmp_path}: run this command in the "
        f"project folder.")


def test_run_refuses_fewer_than_one_iteration(capsys):
    with pytest.raises(SystemExit) as exited:
        nst_utils.main(["run", "--iterations", "0"])
    assert exited.value.code == 2
    assert "--iterations must be at least 1" in capsys.readouterr().err
