"""Training plots for a run directory (matplotlib, Agg backend: no display needed).

loss.png        training loss per logged iteration (log scale)
accuracy.png    held-out exact match at each evaluation
prediction.png  the model's next-token probabilities at each answer position of one example
attention.png   last block's attention pattern for that example, averaged over heads
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from gptdecoder.model import GPT  # noqa: E402
from gptdecoder.tasks import Example, Task, build_example  # noqa: E402


def plot_run(run_dir: Path, records: list[dict], model: GPT, task: Task, example: Example) -> None:
    """Write all four plots into run_dir."""
    plot_curves(run_dir, records)
    plot_prediction(run_dir / "prediction.png", model, task, example)
    plot_attention(run_dir / "attention.png", model, task, example)


def plot_curves(run_dir: Path, records: list[dict]) -> None:
    for key, filename, ylabel in (("loss", "loss.png", "training loss (answer tokens)"),
                                  ("accuracy", "accuracy.png", "held-out exact match")):
        points = [(r["iter"], r[key]) for r in records if key in r]
        fig, ax = plt.subplots(figsize=(6, 4))
        if points:
            ax.plot(*zip(*points), marker="." if key == "accuracy" else None)
        ax.set_xlabel("iteration")
        ax.set_ylabel(ylabel)
        if key == "loss" and points and min(v for _, v in points) > 0:
            ax.set_yscale("log")
        if key == "accuracy":
            ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(run_dir / filename, dpi=100)
        plt.close(fig)


def _forward_example(model: GPT, example: Example) -> tuple[torch.Tensor, list[int], list[int]]:
    prompt, answer = example
    x, _, _ = build_example(prompt, answer)
    device = next(model.parameters()).device
    return torch.tensor([x], device=device), x, prompt


@torch.no_grad()
def plot_prediction(path: Path, model: GPT, task: Task, example: Example) -> None:
    """One bar chart per answer position: the probability of each vocabulary symbol
    (teacher-forced: each position sees the true answer tokens before it). Green = correct."""
    prompt, answer = example
    idx, _, _ = _forward_example(model, example)
    logits, _ = model(idx)
    probs = logits[0, len(prompt) - 1 :].float().softmax(-1).cpu()  # (len(answer), vocab)
    n = len(answer)
    fig, axes = plt.subplots(n, 1, figsize=(max(4, 0.45 * task.vocab_size + 1), 1.3 * n + 0.6), sharex=True, squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        colors = ["tab:green" if t == answer[i] else "tab:gray" for t in range(task.vocab_size)]
        ax.bar(range(task.vocab_size), probs[i].tolist(), color=colors)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"pos {i}", rotation=0, ha="right", va="center")
    axes[-1, 0].set_xticks(range(task.vocab_size), task.symbols)
    fig.suptitle(f"{task.name}: {task.format(prompt)} -> {task.format(answer)}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@torch.no_grad()
def plot_attention(path: Path, model: GPT, task: Task, example: Example) -> None:
    """Heatmap of the last block's attention (query rows, key columns), mean over heads."""
    idx, x, _ = _forward_example(model, example)
    name = f"blocks.{model.config.n_layer - 1}.attn.hook_pattern"
    _, cache = model.run_with_cache(idx, names_filter=name)
    pattern = cache[name][0].float().mean(0).cpu()  # (T, T)
    labels = [task.symbols[t] for t in x]
    size = max(4, 0.35 * len(x) + 1.5)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(pattern, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(x)), labels)
    ax.set_yticks(range(len(x)), labels)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query")
    ax.set_title(f"last block attention, {model.config.n_head} heads averaged", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
