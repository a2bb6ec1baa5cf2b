"""The shipped bench files: every cell of configs/bench.yaml (and of the length study) builds and validates."""
from __future__ import annotations

import os

from gptdecoder import bench
from conftest import ROOT


def test_default_grid_is_valid(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # its base configs are named relative to the repository
    spec = bench.load_bench(os.path.join("configs", "bench.yaml"))
    assert len(spec.bases) >= 2 and spec.axes and len(spec.seeds) >= 2
    cells = bench.expand(spec, out=tmp_path)
    assert len(cells) == len(spec.bases) * len(spec.seeds) * len(next(iter(spec.axes.values())))
    assert len({c.key for c in cells}) == len(cells)


def test_length_study_grid_is_valid(tmp_path, monkeypatch):
    """The README's length-generalisation study: named model variants, each a whole model section."""
    monkeypatch.chdir(ROOT)
    spec = bench.load_bench(os.path.join("configs", "bench", "length_generalization.yaml"))
    cells = bench.expand(spec, out=tmp_path)
    assert len({c.key for c in cells}) == len(cells) == len(spec.bases) * len(spec.seeds) * len(spec.axes["model"])
    random = [c for c in cells if c.values["model"] == "learned+random"]
    assert random and all(c.config.model.random_positions == 64 for c in random)
