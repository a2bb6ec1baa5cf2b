"""Capture attention patterns, and gather what the pictures of one example need.

``capture_attention`` runs the model once with hooks on every layer's
``hook_pattern`` and returns the patterns as a list, one [batch, heads, query, key]
tensor per layer. ``stack_patterns`` and ``as_layer_head_array`` turn that list (or
a ``run_with_cache`` cache) into the single tensor or array the other lab modules
draw from, so every view accepts the same inputs.

The patterns are the raw softmax output, upper triangle included: for a causal
model it must be exactly 0 there, and a view that hid it would hide a leaking mask.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence, Union

import numpy as np
import torch

from gptdecoder.model import GPT
from gptdecoder.tasks import Example, Task

Cache = Mapping[str, torch.Tensor]
Patterns = Union[torch.Tensor, Sequence[torch.Tensor]]  # [L, B, H, T, T] or L x [B, H, T, T]


def pattern_name(layer: int) -> str:
    """Hook point name of one layer's attention pattern."""
    return f"blocks.{layer}.attn.hook_pattern"


def z_name(layer: int) -> str:
    """Hook point name of one layer's per-head attention output (pattern @ V)."""
    return f"blocks.{layer}.attn.hook_z"


@torch.no_grad()
def capture_attention(model: GPT, idx: torch.Tensor, position_ids: Optional[torch.Tensor] = None) -> list[torch.Tensor]:
    """Attention patterns of every layer for idx (B, T) (at ``position_ids``, if given): a
    list of [B, heads, T, T].

    Only the patterns are kept (not every hook point), so this is cheap enough to call
    on a batch. The values are the raw softmax output, upper triangle included.
    """
    n_layer = model.config.n_layer
    _, cache = model.run_with_cache(idx, names_filter=[pattern_name(i) for i in range(n_layer)],
                                    position_ids=position_ids)
    return patterns_from_cache(cache, n_layer)


def patterns_from_cache(cache: Cache, n_layer: Optional[int] = None) -> list[torch.Tensor]:
    """The per-layer patterns in a cache from ``run_with_cache``, in layer order.

    ``n_layer`` defaults to the number of pattern entries; a missing layer is an error
    (a silently shorter list would mislabel the layers that follow).
    """
    if n_layer is None:
        n_layer = sum(1 for name in cache if name.endswith("attn.hook_pattern"))
    missing = [pattern_name(i) for i in range(n_layer) if pattern_name(i) not in cache]
    if missing or n_layer == 0:
        raise KeyError(f"cache has no attention pattern for {missing or 'any layer'}; "
                       "capture with names_filter=lambda n: n.endswith('hook_pattern')")
    return [cache[pattern_name(i)] for i in range(n_layer)]


def stack_patterns(patterns: Union[Sequence[torch.Tensor], Cache]) -> torch.Tensor:
    """Per-layer patterns (a list, or a cache) -> one tensor [layer, B, heads, T, T]."""
    if isinstance(patterns, Mapping):
        patterns = patterns_from_cache(patterns)
    return torch.stack(list(patterns), dim=0)


def as_layer_head_array(patterns: Patterns, batch_index: int = 0) -> np.ndarray:
    """Patterns of one example as a float array [layer, head, query, key].

    Accepts the list from capture_attention, a stacked [L, B, H, T, T] tensor, or an
    already unbatched [L, H, T, T] tensor, so every figure and view takes all three.
    """
    if not isinstance(patterns, torch.Tensor):
        patterns = torch.stack([p.detach() for p in patterns])
    if patterns.dim() == 5:
        patterns = patterns[:, batch_index]
    if patterns.dim() != 4:
        raise ValueError(f"patterns of shape {tuple(patterns.shape)}: expected [L, B, H, T, T] or [L, H, T, T]")
    return patterns.detach().float().cpu().numpy()


def token_labels(ids: Sequence[int], symbols: Sequence[str]) -> list[str]:
    """Readable labels for token ids: the task's symbol for each id."""
    return [symbols[int(i)] for i in ids]


@torch.no_grad()
def example_views(model: GPT, task: Task, prompt: list[int], answer: list[int]) -> dict:
    """Everything the pictures of one example need, from one teacher-forced pass.

    Keys: ``patterns`` (list of [1, H, T, T]), ``tokens`` (labels), ``boundary`` (the
    first answer position the model reads), ``answer_positions`` (the positions whose
    target is an answer token), ``targets`` (those tokens) and ``probs`` ([n_answer,
    vocab], the predicted distribution at each answer position).
    """
    x, y, mask = task.build(prompt, answer)
    device = next(model.parameters()).device
    idx = torch.tensor([x], device=device)
    ids = task.position_ids(prompt, len(answer))[: len(x)] if task.couples_positions else None
    pos = None if ids is None else torch.tensor([ids], device=device)
    patterns = capture_attention(model, idx, pos)
    logits, _ = model(idx, position_ids=pos)
    answer_positions = [i for i, m in enumerate(mask) if m]
    return {
        "patterns": [p.cpu() for p in patterns],
        "tokens": token_labels(x, task.symbols),
        "position_ids": ids,  # the task's own position ids, or None for 0, 1, ...
        "boundary": len(prompt),  # x[len(prompt)] is the first answer token the model reads
        "answer_positions": answer_positions,
        "targets": [y[i] for i in answer_positions],
        "probs": logits[0, answer_positions].float().softmax(dim=-1).cpu(),
    }


def most_varied(examples: Sequence[Example]) -> int:
    """Index of the first example whose prompt has the most distinct tokens.

    A prompt like 0 0 0 0 0 2 makes dull pictures; one that uses every symbol shows
    how the model tells them apart.
    """
    if not examples:
        raise ValueError("most_varied: no examples to choose from")
    return max(range(len(examples)), key=lambda i: (len(set(examples[i][0])), -i))
