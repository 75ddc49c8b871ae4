"""The notebook runs top to bottom, headless, in a copy of the project with tiny VGG-19 weights."""
import re
import shutil

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from PIL import Image

from conftest import ROOT
from grading.mat_fixture import write_vgg19_mat
from grading.references import GA, J_CONTENT, J_STYLE_LAYER, J_TOTAL

NUMBER = r"(-?[\d.]+(?:e[+-]?\d+)?)"


def project_copy(folder, with_weights=True):
    """The files a student has, with tiny weights instead of the real ones, output/ empty."""
    shutil.copy(ROOT / "nst_utils.py", folder)
    shutil.copytree(ROOT / "images", folder / "images")
    (folder / "output").mkdir()
    (folder / "pretrained-model").mkdir()
    if with_weights:
        write_vgg19_mat(folder / "pretrained-model" / "imagenet-vgg-verydeep-19.mat")
    return folder


def execute(notebook, folder):
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(folder)}}).execute()


def printed_text(notebook):
    return "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for output in cell.get("outputs", []) if output.get("name") == "stdout")


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.mark.slow
def test_notebook_runs_end_to_end_and_prints_reference_values(tmp_path, notebook_path):
    untouched = {name: listing(ROOT / name) for name in ("output", "pretrained-model")}
    project = project_copy(tmp_path)
    notebook = nbformat.read(notebook_path, as_version=4)
    try:
        execute(notebook, project)
    except CellExecutionError as error:
        pytest.fail(f"a notebook cell raised an error:\n{error}", pytrace=False)

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
    # section 4 with the course pair, then section 5 with "your own" pair
    assert re.findall(r"Iteration (\d+) :", text) == [str(i) for i in range(0, 200, 20)] * 2

    run_files = {f"{i}.png" for i in range(0, 200, 20)} | {"generated_image.jpg"}
    figure_files = {"summary.png", "costs.png", "iterations.png"}
    assert {p.name for p in (project / "output").iterdir()} == run_files | figure_files | {
        "my_images"}
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
def test_notebook_without_weights_stops_at_model_cell_with_download_advice(tmp_path,
                                                                          notebook_path):
    project = project_copy(tmp_path, with_weights=False)
    notebook = nbformat.read(notebook_path, as_version=4)
    with pytest.raises(CellExecutionError) as raised:
        execute(notebook, project)
    assert raised.value.ename == "FileNotFoundError"
    assert "python -m nst_utils download" in raised.value.evalue
    assert "vlfeat.org/matconvnet/models/imagenet-vgg-verydeep-19.mat" in raised.value.evalue
    failed = [cell for cell in notebook.cells if cell.cell_type == "code"
              and any(out.get("output_type") == "error" for out in cell.get("outputs", []))]
    assert len(failed) == 1 and "load_vgg_model(CONFIG.VGG_MODEL)" in failed[0].source
