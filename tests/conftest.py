"""Shared test helpers: paths, a tiny config file, a tiny model, running demo.py in a subprocess.

Two options find tests that depend on the order they run in (every test must pass in any
order): ``--reverse`` runs the collected tests last to first, ``--shuffle SEED`` in an
order drawn from SEED, e.g. ``python -m pytest -q --shuffle 3``.
"""
from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

if TYPE_CHECKING:
    import transformers

    from gptdecoder.model import GPT

ROOT = Path(__file__).resolve().parent.parent

# the models under test are tiny: one thread is fastest and keeps timings stable on a busy machine
torch.set_num_threads(1)

# A guard against a hung subprocess, not a speed check: no test's outcome may depend on how
# busy the machine is, and the few seconds these commands take grow tenfold under load.
HANG_TIMEOUT = 600


def pytest_addoption(parser):
    group = parser.getgroup("order", "test order (to find tests that depend on it)")
    group.addoption("--reverse", action="store_true", help="run the tests in reverse order")
    group.addoption("--shuffle", type=int, metavar="SEED", help="run the tests in an order drawn from SEED")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--reverse"):
        items.reverse()
    seed = config.getoption("--shuffle")
    if seed is not None:
        random.Random(seed).shuffle(items)


def pytest_report_header(config):
    if config.getoption("--reverse") or config.getoption("--shuffle") is not None:
        return f"test order: reverse={config.getoption('--reverse')} shuffle={config.getoption('--shuffle')}"


TINY_CONFIG = """
model: {n_layer: 1, n_head: 2, d_model: 16}
task: {name: sort, params: {length: 4, num_digits: 3}}
train: {batch_size: 32, max_iters: 8, eval_interval: 4, log_interval: 2, warmup_iters: 2, precision: fp32}
eval: {examples: 64, train_examples: 32}
output: {plots: false}
"""

TINY_MODEL = dict(vocab_size=11, block_size=16, n_layer=2, n_head=2, d_model=16)


def tiny_model(seed: int = 0, *, train: bool = False, noise: float = 0.0, embedding_scale: float = 1.0,
               **config) -> "GPT":
    """The tests' one small GPT: ``GPTConfig(**{**TINY_MODEL, **config})`` initialised from
    ``torch.manual_seed(seed)``, so the same arguments always give the same weights.

    In eval mode unless ``train``. ``noise``: N(0, noise**2) added to every parameter (the
    init leaves biases 0 and LayerNorm gains 1, so a swapped or transposed tensor would
    not show). ``embedding_scale``: the token embeddings (and with them the tied
    unembedding) multiplied by it, for logits sharp enough that choices depend on the
    context.
    """
    from gptdecoder.model import GPT, GPTConfig

    torch.manual_seed(seed)
    model = GPT(GPTConfig(**{**TINY_MODEL, **config})).train(train)
    with torch.no_grad():
        if noise:
            for p in model.parameters():
                p.add_(torch.randn_like(p) * noise)
        if embedding_scale != 1.0:
            model.wte.weight.mul_(embedding_scale)
    return model


def tiny_hf_model(seed: int = 0, *, noise: float = 0.1, **config) -> "transformers.GPT2LMHeadModel":
    """transformers' GPT2LMHeadModel of the same kind, in eval mode, no dropout, seeded; ``noise``
    as in tiny_model (Hugging Face initialises biases to 0 and LayerNorms to 1 too)."""
    import transformers

    kwargs = dict(vocab_size=61, n_positions=24, n_embd=16, n_layer=2, n_head=2, resid_pdrop=0.0, embd_pdrop=0.0,
                  attn_pdrop=0.0, bos_token_id=None, eos_token_id=None)
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**{**kwargs, **config})).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * noise)
    return model


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
def _session_cache(tmp_path_factory):
    """Derived data (encoded corpora) goes to a temporary cache, never to the user's ~/.cache:
    this one serves the module- and session-scoped fixtures, set up before any test's own."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GPTDECODER_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _fresh_cache(_session_cache, tmp_path_factory, monkeypatch):
    """... and each test gets an empty cache of its own: what a test finds there must not
    depend on which tests ran before it (the same text encoded by an earlier test would be
    "reused", and a test counting encodings would fail in another order)."""
    monkeypatch.setenv("GPTDECODER_CACHE", str(tmp_path_factory.mktemp("cache")))


def run_demo(*args: str, cwd: Path = ROOT, timeout: float = HANG_TIMEOUT) -> subprocess.CompletedProcess:
    """``python demo.py ARGS`` as a user would run it."""
    return subprocess.run([sys.executable, str(ROOT / "demo.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
