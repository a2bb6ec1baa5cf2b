"""``python -m gptdecoder pictures --run PATH --out DIR``: the attention lab's pictures of a model.

PATH is a task run directory, or any model ``gptdecoder.runs.load_model`` opens (a
Hugging Face GPT-2 directory, a nanoGPT ckpt.pt) with ``-c CONFIG`` naming the task. A
text model without ``-c`` draws its attention on ``--text`` (or, for our text runs, the
start of the validation text); the task-only pictures are left out, and it says so.
For one held-out example of the task it writes every layer's and head's
pattern, the last block averaged over heads, where one answer token looks, the
predicted distribution at each answer position and the head-ablation heatmap; with
``--html`` also the offline attention viewer (one HTML file, no network: matrix, head
and model views) and bertviz's head and model views (which need network access).
The README's pictures in docs/img come from here. ``python -m gptdecoder.viz`` is
the same command under its older name (``main`` below).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from gptdecoder.commands import text_for
from gptdecoder.errors import UserError
from gptdecoder.lab.ablation import encode_examples, head_ablation_scores
from gptdecoder.lab.capture import example_views, most_varied
from gptdecoder.lab.views import attention_viewer_html, bertviz_page
from gptdecoder.runs import LoadedModel, load_model, task_for
from gptdecoder.storage import write_atomic

FORMATS = ("png", "svg")


def render_run_images(run_dir: Union[str, Path], out: Union[str, Path], example: Optional[int] = None,
                      fmt: str = "png", ablation_examples: int = 500, html_views: bool = False,
                      config: Optional[Union[str, Path]] = None, text: Optional[str] = None) -> list[Path]:
    """Render the attention lab's pictures for one held-out example of a task: the run's
    own, or (for a model without one) the task of ``config``.

    ``example`` indexes ``task.test_examples(ablation_examples)``; by default the most
    varied prompt is drawn. The head-ablation heatmap uses all those examples.
    ``html_views`` also writes our offline viewer and bertviz's two views as HTML files.
    A text model (no task, no ``config``) gets ``render_text_images`` instead.
    Returns the paths written.
    """
    # matplotlib is imported only when pictures are drawn: cli.py imports every command
    # module to build its parser, and the other commands should not pay for it
    from gptdecoder.commands.files import save_figure
    from gptdecoder.lab.figures import (
        plot_answer_distributions, plot_attention_grid, plot_head_average, plot_head_scores, plot_token_attention,
    )

    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    loaded = load_model(run_dir, device="cpu")
    if loaded.task is None and config is None:  # a text model: its attention on text, no task parts
        return render_text_images(loaded, Path(out), text, fmt, html_views)
    model, task = loaded.model, task_for(loaded, config)
    examples = task.test_examples(ablation_examples, seed=0)
    if not examples:
        raise UserError(f"task {task.name!r} has no held-out examples to draw")
    if example is None:
        example = most_varied(examples)
    if not 0 <= example < len(examples):
        raise UserError(f"--example {example}: there are {len(examples)} held-out examples (0..{len(examples) - 1})")
    prompt, answer = examples[example]
    views = example_views(model, task, prompt, answer)
    tokens, boundary, patterns = views["tokens"], views["boundary"], views["patterns"]
    middle = views["answer_positions"][len(views["answer_positions"]) // 2]
    baseline, scores = head_ablation_scores(model, encode_examples(examples, task))
    pictures = {
        "attention_all_heads": plot_attention_grid(
            patterns, tokens, boundary, title=f"{task.name}: attention of every layer and head"),
        "attention_last_block": plot_head_average(patterns, tokens, layer=-1, boundary=boundary),
        "attention_from_token": plot_token_attention(patterns, tokens, middle, boundary),
        "answer_distribution": plot_answer_distributions(
            views["probs"], task.symbols, views["targets"], views["answer_positions"]),
        "head_ablation": plot_head_scores(
            scores.numpy(), f"{task.name}: held-out accuracy with one head zero-ablated",
            "exact-match accuracy", baseline=baseline),
    }
    out = Path(out)
    paths = [save_figure(fig, out / f"{name}.{fmt}") for name, fig in pictures.items()]
    if html_views:
        title = f"{task.name}: {task.format(prompt)} -> {task.format(answer)}"
        paths += write_html_views(out, patterns, tokens, title, boundary, views["position_ids"])
    return paths


TEXT_LEFT_OUT = ("answer_distribution", "head_ablation")  # they need a task's answers


def render_text_images(loaded: LoadedModel, out: Path, text: Optional[str], fmt: str = "png",
                       html_views: bool = False) -> list[Path]:
    """A text model's attention on text: the user's, or its validation text; up to
    block_size tokens (at most 48, so that a picture stays readable). The task-only
    pictures (``TEXT_LEFT_OUT``) are left out."""
    from gptdecoder.commands.files import save_figure
    from gptdecoder.lab.capture import capture_attention
    from gptdecoder.lab.figures import plot_attention_grid, plot_head_average, plot_token_attention

    tokenizer = loaded.tokenizer
    if tokenizer is None:
        raise UserError(f"{loaded.description}: no tokenizer to read text with ({loaded.no_tokenizer}); "
                        f"pass -c CONFIG naming a task")
    ids = tokenizer.encode(text_for(loaded, text))[: min(loaded.model.config.block_size, 48)]
    if len(ids) < 2:
        raise UserError("the text is shorter than two tokens: give more")
    tokens = [tokenizer.decode([i]) for i in ids]
    patterns = capture_attention(loaded.model, torch.tensor([ids]))
    pictures = {
        "attention_all_heads": plot_attention_grid(patterns, tokens, None, title="attention of every layer and head"),
        "attention_last_block": plot_head_average(patterns, tokens, layer=-1, boundary=None),
        "attention_from_token": plot_token_attention(patterns, tokens, len(ids) - 1, None),
    }
    paths = [save_figure(fig, out / f"{name}.{fmt}") for name, fig in pictures.items()]
    if html_views:
        paths += write_html_views(out, patterns, tokens, f"{loaded.description}: {''.join(tokens)[:80]}")
    return paths


def write_html_views(out: Path, patterns, tokens: list[str], title: str, boundary: Optional[int] = None,
                     position_ids: Optional[list[int]] = None) -> list[Path]:
    """Our offline viewer and bertviz's head and model views of ``patterns``, as HTML files."""
    paths = [write_atomic(out / "attention_viewer.html",
                          attention_viewer_html(patterns, tokens, title, boundary, position_ids=position_ids))]
    for view in ("head", "model"):
        paths.append(write_atomic(out / f"bertviz_{view}_view.html", bertviz_page(patterns, tokens, view)))
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # dest run_dir: the command line keeps each command's entry point in args.run
    parser.add_argument("--run", dest="run_dir", metavar="PATH", default="runs/config",
                        help="trained task run (default runs/config), Hugging Face GPT-2 directory or nanoGPT "
                             "ckpt.pt (these need -c)")
    parser.add_argument("-c", "--config", help="task config, for a model that has no task of its own")
    parser.add_argument("--out", default="docs/img", help="output directory (default docs/img)")
    parser.add_argument("--example", type=int, help="which held-out example to draw (default: the most varied)")
    parser.add_argument("--format", choices=FORMATS, default="png", help="image format (default png)")
    parser.add_argument("--text", help="for a text model: the text to look at (default: the start of the run's "
                                       "validation text)")
    parser.add_argument("--html", action="store_true",
                        help="also write attention_viewer.html (offline: matrix, head and model views) "
                             "and bertviz's head and model views (these load their JavaScript from a CDN)")


def run(args: argparse.Namespace) -> int:
    paths = render_run_images(args.run_dir, args.out, args.example, args.format, html_views=args.html,
                              config=args.config, text=args.text)
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    if not any(path.stem in TEXT_LEFT_OUT for path in paths):
        print(f"left out for a model without a task: {', '.join(TEXT_LEFT_OUT)} (they need a task's answers)")
    return 0


def main(argv: Optional[Sequence[str]] = None, prog: str = "python -m gptdecoder.viz") -> int:
    """The ``pictures`` command on its own: parse argv, run, and turn a UserError into one ``error:`` line."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
