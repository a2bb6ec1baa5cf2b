"""training_figures and bench_figure: the right pictures for each kind of run, drawn from records."""
from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure

from conftest import tiny_model
from gptdecoder.commands.files import save_figure
from gptdecoder.lab.bench_figures import bench_figure
from gptdecoder.lab.figures import is_text_records, training_figures
from gptdecoder.tasks import get_task

TASK_RECORDS = [
    {"iter": 10, "loss": 0.64, "lr": 0.005, "train_seconds": 0.2},
    {"iter": 10, "train_seconds": 0.2, "accuracy": 0.13, "eval_examples": 167},
    {"iter": 20, "loss": 0.39, "lr": 0.01, "train_seconds": 0.4},
    {"iter": 20, "train_seconds": 0.4, "accuracy": 0.71, "eval_examples": 167},
]
TEXT_RECORDS = [
    {"iter": 10, "loss": 3.1, "lr": 0.001},
    {"iter": 10, "val_loss": 3.2, "val_bits_per_byte": 4.6},
    {"iter": 20, "loss": 2.7, "lr": 0.001},
    {"iter": 20, "whole_val_loss": 2.9},
]


def lines_of(fig: Figure) -> list:
    return [line for ax in fig.axes for line in ax.get_lines()]


def test_task_records_give_loss_and_accuracy(tmp_path):
    figures = training_figures(TASK_RECORDS)
    assert set(figures) == {"loss.png", "accuracy.png"}
    loss = lines_of(figures["loss.png"])
    assert len(loss) == 1 and list(loss[0].get_xdata()) == [10, 20]
    assert figures["loss.png"].axes[0].get_yscale() == "log"
    assert list(lines_of(figures["accuracy.png"])[0].get_ydata()) == [0.13, 0.71]
    for name, fig in figures.items():
        assert save_figure(fig, tmp_path / name).read_bytes().startswith(b"\x89PNG")


def test_text_records_give_one_loss_figure_with_train_and_validation():
    assert is_text_records(TEXT_RECORDS) and not is_text_records(TASK_RECORDS)
    figures = training_figures(TEXT_RECORDS)
    assert set(figures) == {"loss.png"}
    labels = [line.get_label() for line in lines_of(figures["loss.png"])]
    assert labels == ["train (batch)", "validation (first windows)", "validation (whole split)"]


def test_records_with_no_points_still_draw(tmp_path):
    for records in ([], [{"iter": 0, "lr": 0.1}]):
        for text in (False, True):
            figures = training_figures(records, text=text)
            assert set(figures) == ({"loss.png"} if text else {"loss.png", "accuracy.png"})
            for name, fig in figures.items():
                assert not lines_of(fig)
                assert save_figure(fig, tmp_path / name).stat().st_size > 0


def test_a_model_and_example_add_prediction_and_attention():
    task = get_task("sort", length=4, num_digits=3)
    model = tiny_model(vocab_size=task.vocab_size, block_size=task.seq_len - 1, dropout=0.1, train=True)
    example = task.test_examples(5)[0]
    figures = training_figures(TASK_RECORDS, model, task, example)
    assert set(figures) == {"loss.png", "accuracy.png", "prediction.png", "attention.png"}
    assert model.training  # drawn in eval mode, then put back
    # the attention picture is the last block averaged over heads: one T x T image
    image = figures["attention.png"].axes[0].get_images()[0].get_array()
    assert image.shape == (task.seq_len - 1, task.seq_len - 1)
    # without an example there is nothing to draw them from
    assert set(training_figures(TASK_RECORDS, model, task)) == {"loss.png", "accuracy.png"}


BENCH_ROWS = [
    {"task": "sort", "model": "small", "seed": 0, "test_accuracy": 1.0, "train_seconds": 10.0},
    {"task": "sort", "model": "small", "seed": 1, "test_accuracy": 0.5, "train_seconds": 20.0},
    {"task": "sort", "model": "large", "seed": 0, "test_accuracy": 0.9, "train_seconds": 30.0},
    {"task": "reverse", "model": "small", "seed": 0, "test_accuracy": 0.2, "train_seconds": 5.0},
]


def test_bench_figure_groups_bars_by_task_and_model(tmp_path):
    fig = bench_figure(BENCH_ROWS)
    accuracy, seconds = fig.axes[:2]
    heights = [bar.get_height() for bar in accuracy.patches]
    # small: sort (mean of two seeds), reverse; large: sort, reverse (no run: no bar)
    assert heights[:3] == pytest.approx([0.75, 0.2, 0.9])
    assert heights[3] != heights[3]  # NaN
    assert [bar.get_height() for bar in seconds.patches][:3] == pytest.approx([15.0, 5.0, 30.0])
    assert [t.get_text() for t in seconds.get_xticklabels()] == ["sort", "reverse"]
    assert save_figure(fig, tmp_path / "results.png").read_bytes().startswith(b"\x89PNG")


def test_bench_figure_of_no_rows_draws():
    assert isinstance(bench_figure([]), Figure)


def test_answer_distributions_of_a_huge_vocabulary_show_the_task_and_the_picks():
    """A GPT-2-sized model borrowed for a task: columns are the task's symbols and what it picks."""
    from gptdecoder.lab.figures import plot_answer_distributions

    probs = torch.full((2, 50257), 1e-6)
    probs[0, 1], probs[1, 40000] = 0.9, 0.9  # the second position picks an id far outside the task
    fig = plot_answer_distributions(probs, ["0", "1", "2"], targets=[1, 2], positions=[5, 6])
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["0", "1", "2", "<40000>"]
