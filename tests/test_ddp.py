"""Two-process DDP training on CPU (gloo) via torchrun; rank 0 alone writes the run directory."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
import torch

from conftest import HANG_TIMEOUT, ROOT

# `python -m torch.distributed.run` is the torchrun command, without relying on PATH
HAVE_TORCHRUN = torch.distributed.is_available() and importlib.util.find_spec("torch.distributed.run") is not None


@pytest.mark.skipif(not HAVE_TORCHRUN, reason="torchrun (torch.distributed) not available")
@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_torchrun_two_cpu_processes(tiny_config, tmp_path, optimizer):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "demo.py"), "-c", str(tiny_config), "--out", str(out), "--set", "train.device=cpu",
           "--set", f"train.optimizer={optimizer}"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=HANG_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert results["world_size"] == 2 and results["iters"] == 8
    assert proc.stdout.count("held-out exact match") == 1  # only rank 0 reports
    state = torch.load(out / "ckpt.pt", weights_only=True)
    assert ("muon_optimizer" in state) == (optimizer == "muon")


@pytest.mark.skipif(not HAVE_TORCHRUN, reason="torchrun (torch.distributed) not available")
def test_torchrun_diverging_run_stops_every_rank(tiny_config, tmp_path):
    """A loss that stops being a number stops both processes at the same step, with the
    one-line error (no rank is left waiting for the other)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "demo.py"), "-c", str(tiny_config), "--out", str(tmp_path / "ddp"), "--set", "train.device=cpu",
           "--set", "train.lr=1e30", "--set", "train.warmup_iters=0", "--set", "train.stop_at_accuracy=null",
           "--set", "train.max_iters=50"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=HANG_TIMEOUT)
    assert proc.returncode != 0
    assert "error: training diverged at iter" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "ddp" / "results.json").exists()
