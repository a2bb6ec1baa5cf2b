"""Heatmaps, bertviz views and the offline HTML viewer are written and honest."""
from __future__ import annotations

import json
import re

import pytest
import torch

from gptdecoder import viz
from gptdecoder.ablate import capture_attention
from gptdecoder.model import GPT, GPTConfig

SYMBOLS = ["0", "1", "2", "</script>"]  # a hostile label must not break the HTML


@pytest.fixture(scope="module")
def example():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=4, block_size=12, n_layer=2, n_head=2, d_model=16)).eval()
    x = torch.tensor([[2, 0, 1, 3, 0, 1, 2]])
    logits, _ = model(x)
    return capture_attention(model, x), viz.token_labels(x[0], SYMBOLS), logits


def test_heatmaps_are_written(example, tmp_path):
    patterns, tokens, logits = example
    figures = {
        "grid.png": viz.plot_attention_grid(patterns, tokens, boundary=4),
        "last.png": viz.plot_head_average(patterns, tokens, boundary=4),
        "token.svg": viz.plot_token_attention(patterns, tokens, position=5, boundary=4),
        "dist.png": viz.plot_answer_distributions(logits[0, 3:6].softmax(-1), SYMBOLS, [0, 1, 2], [3, 4, 5]),
        "heads.png": viz.plot_head_scores([[0.5, 1.0], [0.0, 0.9]], "accuracy", "acc", baseline=1.0),
    }
    for name, fig in figures.items():
        path = viz.save_figure(fig, tmp_path / name)
        assert path.stat().st_size > 1000
    assert (tmp_path / "grid.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (tmp_path / "token.svg").read_bytes()[:1000]


def test_layer_head_array_accepts_list_and_stacked(example):
    patterns, _, _ = example
    from_list = viz.as_layer_head_array(patterns)
    assert from_list.shape == (2, 2, 7, 7)
    assert (viz.as_layer_head_array(torch.stack(patterns)) == from_list).all()


def test_bertviz_views(example, tmp_path):
    patterns, tokens, _ = example
    attention = viz.bertviz_attention(patterns)
    assert len(attention) == 2 and attention[0].shape == (1, 2, 7, 7)
    for view in ("head", "model"):
        path = viz.write_bertviz_html(tmp_path / f"{view}.html", patterns, tokens, view=view)
        assert "<html>" in path.read_text()[:200]


def test_offline_viewer_is_self_contained_and_embeds_raw_values(example, tmp_path):
    patterns, tokens, _ = example
    leaky = [p.clone() for p in patterns]
    leaky[1][0, 1, 0, 6] = 3e-9  # a tiny leak above the diagonal must survive into the file
    page = viz.write_attention_viewer(tmp_path / "viewer.html", leaky, tokens, boundary=4).read_text()
    assert not re.search(r"<(script|link)[^>]+(src|href)\s*=\s*[\"']?(https?:)?//", page, re.I)
    assert "http://" not in page and "https://" not in page
    raw = re.search(r'<script id="attention-data" type="application/json">(.*?)</script>', page, re.S).group(1)
    data = json.loads(raw.replace("<\\/", "</"))
    assert data["tokens"] == tokens and data["boundary"] == 4
    assert len(data["patterns"]) == 2 and len(data["patterns"][0]) == 2
    assert data["patterns"][1][1][0][6] == pytest.approx(3e-9)
    assert data["patterns"][0][0][3][2] == pytest.approx(float(patterns[0][0, 0, 3, 2]), rel=1e-5)
