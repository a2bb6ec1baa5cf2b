"""The bench grid writes results.md, results.csv and a plot."""
from __future__ import annotations

import csv

import pytest

from gptdecoder.commands import bench
from gptdecoder.errors import UserError
from conftest import ROOT


def test_tiny_grid(tiny_config, tmp_path):
    grid = tmp_path / "bench.yaml"
    grid.write_text(f"tasks: [{tiny_config}]\nmodels: {{a: {{d_model: 16}}, b: {{d_model: 32}}}}\n"
                    f"seeds: [0]\nset: [train.max_iters=4]\nout: {tmp_path / 'out'}\n")
    rows = bench.run_grid(bench.load_bench(str(grid)))
    bench.write_results(rows, tmp_path / "out")
    assert [r["model"] for r in rows] == ["a", "b"]
    with open(tmp_path / "out" / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    assert "| tiny | a |" in (tmp_path / "out" / "results.md").read_text()
    assert (tmp_path / "out" / "results.png").stat().st_size > 0


def test_default_grid_is_valid_and_typos_fail():
    grid = bench.load_bench(str(ROOT / "configs" / "bench.yaml"))
    assert grid.tasks and grid.models and grid.seeds
    with pytest.raises(UserError, match="did you mean 'seeds'"):
        bench.build_section(bench.BenchConfig, {"seed": [0]}, "bench")
