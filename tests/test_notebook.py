"""visualize.ipynb: committed with outputs, and it runs top to bottom headlessly."""
from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "visualize.ipynb"


def test_committed_notebook_has_outputs_and_no_errors():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert code_cells and all(c.outputs for c in code_cells), "commit the notebook executed"
    assert not [o for c in code_cells for o in c.outputs if o.output_type == "error"]
    assert NOTEBOOK.stat().st_size < 3_000_000


def test_notebook_executes_headlessly():
    """Every cell runs (on a fresh clone it trains the default config first)."""
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}})
    client.execute()  # raises CellExecutionError on the first failing cell
