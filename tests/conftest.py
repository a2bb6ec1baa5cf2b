"""Shared test helpers: paths, a tiny config file, running demo.py in a subprocess."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent

# the models under test are tiny: one thread is fastest and keeps timings stable on a busy machine
torch.set_num_threads(1)

TINY_CONFIG = """
model: {n_layer: 1, n_head: 2, d_model: 16}
task: {name: sort, params: {length: 4, num_digits: 3}}
train: {batch_size: 32, max_iters: 8, eval_interval: 4, log_interval: 2, warmup_iters: 2, precision: fp32}
eval: {examples: 64, train_examples: 32}
output: {plots: false}
"""


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG)
    return path


@pytest.fixture(autouse=True)
def one_thread():
    """Each test starts on one thread, and a command that changes it (generate --threads) is undone."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def _cache_in_a_temporary_directory(tmp_path_factory):
    """Derived data (encoded corpora) goes to a fresh cache, never to the user's ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GPTDECODER_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


def run_demo(*args: str, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python demo.py ARGS`` as a user would run it."""
    return subprocess.run([sys.executable, str(ROOT / "demo.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
