"""Heatmaps, bertviz views and the offline HTML viewer are written and honest; the ``pictures`` command."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import HANG_TIMEOUT, tiny_model
from lab_runs import write_untrained_run

from gptdecoder.storage import write_atomic
from gptdecoder.commands.files import save_figure
from gptdecoder.lab import figures, views
from gptdecoder.lab.capture import as_layer_head_array, capture_attention, token_labels

ROOT = Path(__file__).resolve().parents[1]
SYMBOLS = ["0", "1", "2", "</script>"]  # a hostile label must not break the HTML


@pytest.fixture(scope="module")
def example():
    model = tiny_model(vocab_size=4, block_size=12)
    x = torch.tensor([[2, 0, 1, 3, 0, 1, 2]])
    logits, _ = model(x)
    return capture_attention(model, x), token_labels(x[0], SYMBOLS), logits


def test_heatmaps_are_written(example, tmp_path):
    patterns, tokens, logits = example
    drawn = {
        "grid.png": figures.plot_attention_grid(patterns, tokens, boundary=4),
        "last.png": figures.plot_head_average(patterns, tokens, boundary=4),
        "token.svg": figures.plot_token_attention(patterns, tokens, position=5, boundary=4),
        "dist.png": figures.plot_answer_distributions(logits[0, 3:6].softmax(-1), SYMBOLS, [0, 1, 2], [3, 4, 5]),
        "heads.png": figures.plot_head_scores([[0.5, 1.0], [0.0, 0.9]], "accuracy", "acc", baseline=1.0),
    }
    for name, fig in drawn.items():
        path = save_figure(fig, tmp_path / name)
        assert path.stat().st_size > 1000
    assert (tmp_path / "grid.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (tmp_path / "token.svg").read_bytes()[:1000]
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary files were renamed away


def test_layer_head_array_accepts_list_and_stacked(example):
    patterns, _, _ = example
    from_list = as_layer_head_array(patterns)
    assert from_list.shape == (2, 2, 7, 7)
    assert (as_layer_head_array(torch.stack(patterns)) == from_list).all()
    with pytest.raises(ValueError):
        as_layer_head_array(torch.zeros(2, 7, 7))


def test_bertviz_views(example, tmp_path):
    pytest.importorskip("bertviz")
    patterns, tokens, _ = example
    attention = views.bertviz_attention(patterns)
    assert len(attention) == 2 and attention[0].shape == (1, 2, 7, 7)
    for view in ("head", "model"):
        path = write_atomic(tmp_path / f"{view}.html", views.bertviz_page(patterns, tokens, view=view))
        assert "<html>" in path.read_text()[:200]


def embedded_data(page: str) -> dict:
    """The viewer's one JSON block, parsed as the page's script parses it."""
    blocks = re.findall(r'<script id="attention-data" type="application/json">(.*?)</script>', page, re.S)
    assert len(blocks) == 1
    return json.loads(blocks[0])


def test_offline_viewer_is_self_contained_and_embeds_rounded_values(example):
    patterns, tokens, _ = example
    leaky = [p.clone() for p in patterns]
    leaky[1][0, 1, 0, 6] = 3e-9  # a tiny leak above the diagonal must survive into the file
    page = views.attention_viewer_html(leaky, tokens, boundary=4)
    assert page == views.attention_viewer_html(leaky, tokens, boundary=4)
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)\s*=", page, re.I)  # nothing loaded
    assert "http://" not in page and "https://" not in page and "@import" not in page
    data = embedded_data(page)
    assert data["tokens"] == tokens and data["boundary"] == 4 and data["digits"] == views.ROUNDING_DIGITS
    assert len(data["patterns"]) == 2 and len(data["patterns"][0]) == 2
    assert data["patterns"][1][1][0][6] == 3e-9
    assert data["patterns"][0][0][0][1] == 0  # exact zeros stay exact
    raw = float(patterns[0][0, 0, 3, 2])
    assert data["patterns"][0][0][3][2] == views.round_weight(raw) == pytest.approx(raw, rel=5e-3)
    for view in ("matrix", "head", "model"):  # three views in the one file
        assert f'id="view-{view}"' in page and f'id="tab-{view}"' in page
    assert f"rounded to {views.ROUNDING_DIGITS} significant digits" in page  # the page says how


def test_round_weight_keeps_zeros_and_tiny_leaks():
    assert views.round_weight(0.0) == 0 and isinstance(views.round_weight(0.0), int)
    assert views.round_weight(1.0) == 1
    assert views.round_weight(0.123456) == 0.123
    assert views.round_weight(0.00123456) == 0.00123
    assert views.round_weight(3e-9) == 3e-9 and views.round_weight(1e-300) > 0
    assert views.round_weight(float("nan")) is None and views.round_weight(float("inf")) is None


def test_viewer_data_cannot_end_its_script_block():
    tokens = ["</script>", "<!--", "<script>", "a"]
    patterns = torch.tril(torch.ones(1, 1, 4, 4)) / torch.arange(1, 5).view(4, 1)
    page = views.attention_viewer_html(patterns, tokens, title="<b>&</b>")
    block = page.split('<script id="attention-data" type="application/json">', 1)[1].split("</script>", 1)[0]
    assert "<" not in block  # every "<" is the JSON escape \u003c
    assert embedded_data(page)["tokens"] == tokens
    assert "<title>&lt;b&gt;&amp;&lt;/b&gt;</title>" in page


def test_viewer_rounds_nan_to_null_and_checks_the_boundary(example):
    patterns, tokens, _ = example
    broken = [p.clone() for p in patterns]
    broken[0][0, 0, 2, :] = float("nan")  # a fully masked row: softmax of all -inf
    data = embedded_data(views.attention_viewer_html(broken, tokens))
    assert data["patterns"][0][0][2] == [None] * len(tokens) and data["boundary"] is None
    with pytest.raises(ValueError):
        views.attention_viewer_html(patterns, tokens, boundary=len(tokens) + 1)
    numpy_boundary = embedded_data(views.attention_viewer_html(patterns, tokens, boundary=np.int64(4)))["boundary"]
    assert numpy_boundary == 4


def test_viewer_rejects_tokens_that_do_not_match_the_patterns(example):
    patterns, tokens, _ = example
    with pytest.raises(ValueError):
        views.attention_viewer_html(patterns, tokens[:-1])


# -- the pictures command -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def untrained_run(tmp_path_factory) -> Path:
    return write_untrained_run(tmp_path_factory.mktemp("run") / "sort")


def test_pictures_command_draws_a_run(untrained_run, tmp_path, capsys):
    pytest.importorskip("bertviz")
    from gptdecoder.cli import main

    assert main(["pictures", "--run", str(untrained_run), "--out", str(tmp_path), "--html"]) == 0
    names = {p.name for p in tmp_path.iterdir()}
    expected = {"attention_all_heads.png", "attention_last_block.png", "attention_from_token.png",
                "answer_distribution.png", "head_ablation.png", "attention_viewer.html",
                "bertviz_head_view.html", "bertviz_model_view.html"}
    assert names == expected
    assert all((tmp_path / name).stat().st_size > 0 for name in names)
    assert capsys.readouterr().out.count("wrote ") == len(expected)


def test_pictures_render_function_and_svg(untrained_run, tmp_path):
    from gptdecoder.commands.pictures import render_run_images

    paths = render_run_images(untrained_run, tmp_path, example=3, fmt="svg", ablation_examples=20)
    assert len(paths) == 5 and all(p.suffix == ".svg" and p.stat().st_size > 0 for p in paths)


def test_pictures_user_errors(untrained_run, tmp_path, capsys):
    from gptdecoder.cli import main

    assert main(["pictures", "--run", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert main(["pictures", "--run", str(untrained_run), "--out", str(tmp_path), "--example", "100000"]) == 2
    assert capsys.readouterr().err.startswith("error:")


def test_python_m_gptdecoder_viz_still_works(untrained_run, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "gptdecoder.viz", "--run", str(untrained_run), "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=HANG_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "attention_all_heads.png").stat().st_size > 0
    missing = subprocess.run([sys.executable, "-m", "gptdecoder.viz", "--run", str(tmp_path / "nope")],
                             capture_output=True, text=True, cwd=ROOT, timeout=HANG_TIMEOUT)
    assert missing.returncode == 2 and missing.stderr.startswith("error:")


def test_a_text_model_draws_its_attention_on_text_without_a_config(tmp_path, capsys):
    """No task and no -c: the attention pictures of the run's validation text (or --text),
    the task-only pictures left out, and said so."""
    from lab_runs import train_text_run

    from gptdecoder import cli

    run = train_text_run(tmp_path)
    assert cli.main(["pictures", "--run", str(run), "--out", str(tmp_path / "pics"), "--html"]) == 0
    printed = capsys.readouterr().out
    names = {p.name for p in (tmp_path / "pics").iterdir()}
    assert {"attention_all_heads.png", "attention_last_block.png", "attention_from_token.png",
            "attention_viewer.html"} <= names and "head_ablation.png" not in names
    assert "left out for a model without a task: answer_distribution, head_ablation" in printed
    assert cli.main(["pictures", "--run", str(run), "--out", str(tmp_path / "typed"), "--text", "ROMEO: hi"]) == 0
    viewer = (tmp_path / "pics" / "attention_viewer.html").read_text()
    assert "JULIET" in viewer or "ROMEO" in viewer  # the validation text's characters
    assert cli.main(["pictures", "--run", str(run), "--out", str(tmp_path / "x"), "--text", "R"]) == 2
    assert "shorter than two tokens" in capsys.readouterr().err
