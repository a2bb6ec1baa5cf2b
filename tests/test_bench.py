"""The shipped bench file: every cell of configs/bench.yaml builds and validates."""
from __future__ import annotations

import os

from gptdecoder import grid
from conftest import ROOT


def test_default_grid_is_valid(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # its base configs are named relative to the repository
    bench = grid.load_bench(os.path.join("configs", "bench.yaml"))
    assert len(bench.bases) >= 2 and bench.axes and len(bench.seeds) >= 2
    cells = grid.expand(bench, out=tmp_path)
    assert len(cells) == len(bench.bases) * len(bench.seeds) * len(next(iter(bench.axes.values())))
    assert len({c.key for c in cells}) == len(cells)
