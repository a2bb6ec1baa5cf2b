"""visualize.ipynb: committed with outputs, and it runs top to bottom headlessly."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import HANG_TIMEOUT

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "visualize.ipynb"


def test_committed_notebook_has_outputs_and_no_errors():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert code_cells and all(c.outputs for c in code_cells), "commit the notebook executed"
    assert not [o for c in code_cells for o in c.outputs if o.output_type == "error"]
    assert NOTEBOOK.stat().st_size < 3_000_000


def test_notebook_executes_headlessly(tmp_path):
    """Every cell runs, from a fresh clone: it trains the default config first.

    The notebook works from the repository root and reads (or first trains) runs/config/
    there. Run in the checkout, the test would depend on whatever run a user or another
    test session left in runs/config/ (or be writing it at the same moment), and leave one
    behind; so the kernel starts in a copy of the code and config.yaml, always trains the
    same run, and the checkout is left as it was. The kernel talks over Unix sockets in
    tmp_path, not TCP ports picked free now and bound a moment later.
    """
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    for package in ("gptdecoder", "bpe"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(ROOT / "config.yaml", tmp_path / "config.yaml")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    kernel = KernelManager(kernel_name="python3", transport="ipc", ip=str(tmp_path / "kernel"))
    client = NotebookClient(nb, km=kernel, timeout=900, startup_timeout=HANG_TIMEOUT,
                            resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()  # raises CellExecutionError on the first failing cell
    finally:
        if kernel.has_kernel:
            kernel.shutdown_kernel(now=True)
    assert (tmp_path / "runs" / "config" / "ckpt.pt").is_file()  # trained here, not in the checkout
