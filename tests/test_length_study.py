"""What the length-generalisation study relies on: train.min_iters, the sinusoidal encoding,
and the shipped configs and bench files (each checked, none trained here)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import ROOT
from gptdecoder.bench import expand, load_bench
from gptdecoder.config import TrainConfig, load_config, resolve_task
from gptdecoder.data.tasks import TaskBatches
from gptdecoder.model import GPT, GPTConfig, Sinusoids
from gptdecoder.tasks import get_task
from gptdecoder.train import Trainer


class AlwaysRight:
    """A data source whose every evaluation is perfect: training may stop at the first one."""

    def __init__(self) -> None:
        self.batches = TaskBatches(get_task("sort", length=3, num_digits=3), 8, seed=0)
        self.evaluations = 0

    def get_batch(self, step: int):
        return self.batches.get_batch(step)

    def evaluate(self, model, final: bool = False) -> dict:
        self.evaluations += 1
        return {"accuracy": 1.0}


@pytest.mark.parametrize("min_iters, stopped_at", [(0, 2), (7, 8), (12, 12)])
def test_min_iters_delays_the_early_stop(min_iters, stopped_at):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=3, block_size=6, n_layer=1, n_head=1, d_model=8))
    cfg = TrainConfig(max_iters=12, eval_interval=2, warmup_iters=1, stop_at_accuracy=0.99, min_iters=min_iters,
                      precision="fp32")
    trainer = Trainer(model, cfg, AlwaysRight())
    trainer.fit(progress=False)
    assert trainer.step == stopped_at


def test_min_iters_is_checked(tmp_path):
    from gptdecoder.config import config_from_dict
    from gptdecoder.errors import UserError

    raw = {"task": {"name": "sort"}, "train": {"max_iters": 10, "min_iters": 11}}
    with pytest.raises(UserError, match=r"train.min_iters=11: expected 0 .. train.max_iters \(10\)"):
        config_from_dict(raw)


def test_sinusoids_are_fixed_relative_and_unnamed_in_the_state_dict():
    table = Sinusoids(64, 16).weight
    assert table.shape == (64, 16)
    gram = table @ table.T  # the dot product of two rows depends only on their distance
    for d in (1, 5, 20):
        diagonal = torch.diagonal(gram, offset=d)
        torch.testing.assert_close(diagonal, diagonal[:1].expand_as(diagonal), atol=1e-6, rtol=1e-4)
    model = GPT(GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=2, d_model=16, pos_encoding="sinusoidal"))
    assert not any("wpe" in name for name, _ in model.named_parameters())
    assert "hook_pos_embed" in model.hook_dict
    idx = torch.zeros((1, 4), dtype=torch.long)
    _, cache = model.run_with_cache(idx, names_filter="hook_pos_embed")
    torch.testing.assert_close(cache["hook_pos_embed"][0], table[:4])  # the same rows at any table length


SHIPPED = ["configs/tasks/copy_coupled.yaml", "configs/tasks/reverse_coupled.yaml",
           "configs/tasks/addition_coupled.yaml"]


@pytest.mark.parametrize("path", SHIPPED)
def test_the_coupled_configs_load_and_couple(path):
    config = resolve_task(load_config(ROOT / path))
    task = get_task(config.task.name, **config.task.params)
    assert task.couples_positions
    lo, hi = config.eval.test_lengths
    assert hi >= 2 * task.length_range[1]  # tested at least twice as long as trained
    longest = task.with_length(hi)
    prompt, answer = longest.test_examples(1)[0]
    assert max(task.position_ids(prompt, len(answer))) < config.model.n_positions


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs" / "bench").glob("length_generalization*.yaml")))
def test_the_study_expands(name, tmp_path: Path):
    bench = load_bench(ROOT / "configs" / "bench" / name)
    cells = expand(bench, out=tmp_path)
    assert len(cells) == len({c.key for c in cells}) and len({c.seed for c in cells}) == 3
    if "coupled" in name:  # the shipped configs, a fixed number of steps each
        assert all(c.task.couples_positions for c in cells)
    else:  # at least min_iters, then until 99% or the cap
        assert all(0 < c.config.train.min_iters < c.config.train.max_iters for c in cells)
        assert all(c.config.train.stop_at_accuracy == 0.99 for c in cells)
