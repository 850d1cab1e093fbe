"""notebooks/results.ipynb is stored without outputs and runs top to bottom on a results folder."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

from tests.test_analysis_plots import write_results_folder  # noqa: E402 - after the importorskip guards

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "results.ipynb"


def _kernel_name() -> str:
    """The python3 kernel, installed for the current interpreter if no kernel spec provides it."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        from ipykernel.kernelspec import install

        install(user=True, kernel_name="python3")
    return "python3"


def test_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code cells"
    assert all(not c.outputs and c.execution_count is None for c in code), "strip the outputs before committing"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


def test_notebook_executes_on_a_results_folder(tmp_path, monkeypatch):
    out = write_results_folder(tmp_path / "out", seeds=2)
    monkeypatch.setenv("RESULTS_DIR", str(out))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name=_kernel_name(), resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()  # raises CellExecutionError with the failing cell's traceback
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert str(out) in text and "8 runs" in text  # 3 optimizers x 2 seeds + 2 language-model runs
    markdown = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    assert markdown and "Digits demo" in markdown[0] and "adamp" in markdown[0]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the figure cell displayed no image"
