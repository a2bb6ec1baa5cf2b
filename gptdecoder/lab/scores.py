"""Score every head by where it attends: head detectors, task sources, attention rollout.

* ``head_scores`` -- TransformerLens's three head detectors (previous token, duplicate
  token, induction) for every layer and head, on any batch of tokens.
* ``repeated_random_tokens`` -- the standard probe for induction and duplicate heads:
  a random sequence followed by itself.
* ``source_positions`` / ``source_scores`` -- for a task, how much attention each head
  pays, from the positions that predict the answer, to the prompt positions that hold
  what the answer is computed from (each task says which: ``Task.source_positions``).
* ``attention_rollout`` -- Abnar & Zuidema (2020): how much each output position draws
  on each input token, through every layer and the residual stream.

All functions are pure: tensors (and a model, a task) in, tensors out. They run the
model as it is: call ``model.eval()`` first, or dropout changes the patterns.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from gptdecoder.lab.ablation import encode_examples
from gptdecoder.lab.capture import capture_attention, stack_patterns
from gptdecoder.model import GPT
from gptdecoder.tasks import Example, Task

HEAD_KINDS = ("previous_token", "duplicate_token", "induction")


# -- TransformerLens's head detectors ------------------------------------------------------------


def detection_patterns(tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """The three detection patterns of TransformerLens's head detector, per sequence.

    tokens (B, T) -> {kind: bool (B, T_q, T_k)}, True at the keys a head of that kind
    attends to from each query:

    * previous_token: key = query - 1;
    * duplicate_token: keys before the query holding the same token (earlier copies);
    * induction: keys right after an earlier copy of the query's token (key - 1 is a
      copy, key <= query).
    """
    B, T = tokens.shape
    positions = torch.arange(T, device=tokens.device)
    query, key = positions[:, None], positions[None, :]  # (T, 1), (1, T)
    previous = (key == query - 1).expand(B, T, T)
    same = tokens[:, :, None] == tokens[:, None, :]  # (B, T_q, T_k): same token
    duplicate = same & (key < query)
    induction = torch.zeros_like(duplicate)
    induction[:, :, 1:] = duplicate[:, :, :-1]  # key k is right after an earlier copy at k - 1
    return {"previous_token": previous, "duplicate_token": duplicate, "induction": induction}


def detection_score(patterns: torch.Tensor, detect: torch.Tensor) -> torch.Tensor:
    """Mean attention mass on the detection positions: patterns [L, B, H, T, T] and
    detect bool [B, T, T] -> [L, H].

    Per sequence: each query's attention summed over its detection keys, averaged over
    the queries that have at least one; then averaged over the sequences that have such
    a query (all zeros when none does).
    """
    detect = detect.to(patterns.device)
    mass = (patterns * detect[None, :, None].to(patterns.dtype)).sum(-1)  # (L, B, H, T_q)
    has_keys = detect.any(-1).to(patterns.dtype)  # (B, T_q)
    n_queries = has_keys.sum(-1)  # (B,)
    per_sequence = (mass * has_keys[None, :, None]).sum(-1) / n_queries.clamp(min=1)[None, :, None]  # (L, B, H)
    counted = n_queries > 0
    if not counted.any():
        return torch.zeros(patterns.size(0), patterns.size(2), device=patterns.device)
    return per_sequence[:, counted].mean(dim=1)  # (L, H)


@torch.no_grad()
def head_scores(model: GPT, tokens: torch.Tensor, position_ids: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
    """Previous-token, duplicate-token and induction score of every head: {kind: [n_layer, n_head]}.

    TransformerLens's head detector (``transformer_lens.head_detector.detect_head``) with
    its default ``error_measure="mul"``, no BOS or current-token exclusion, and one
    change: its score divides the attention on the detection pattern by the attention
    of *all* queries, so queries that have no detection key (the first position for
    previous-token; every first-half position of a repeated sequence for induction)
    count as zeros and an ideal induction head scores about 1/2. Here the mean is over
    the queries that have at least one detection key, so an ideal head of each kind
    scores 1. As TransformerLens does for a list of sequences, each sequence is scored
    on its own and the scores are averaged (over the sequences with such a query).

    Works on any token batch (B, T) (at ``position_ids``, if the task gives them); use
    ``repeated_random_tokens`` for induction and duplicate heads, whose patterns only show
    when tokens repeat.
    """
    patterns = stack_patterns(capture_attention(model, tokens, position_ids)).float()  # (L, B, H, T, T)
    detect = detection_patterns(tokens.to(patterns.device))
    return {kind: detection_score(patterns, detect[kind]).cpu() for kind in HEAD_KINDS}


def repeated_random_tokens(vocab_size: int, batch: int, half_len: int, seed: int) -> torch.Tensor:
    """(batch, 2 * half_len) ids: a random sequence of half_len tokens, then the same again.

    An induction head continues the second half by attending from each token to the
    token after its copy in the first half; a duplicate-token head attends to the copy.
    Within a half the tokens are distinct when the vocabulary allows it (vocab_size >=
    half_len), so every second-half token has exactly one earlier copy and the next token
    is predictable; otherwise they are drawn with replacement.
    """
    if vocab_size < 1 or batch < 1 or half_len < 1:
        raise ValueError(f"vocab_size={vocab_size}, batch={batch}, half_len={half_len}: expected >= 1")
    generator = torch.Generator().manual_seed(seed)
    if vocab_size >= half_len:
        first = torch.stack([torch.randperm(vocab_size, generator=generator)[:half_len] for _ in range(batch)])
    else:
        first = torch.randint(0, vocab_size, (batch, half_len), generator=generator)
    return torch.cat([first, first], dim=1)


# -- attention to a task's sources ------------------------------------------------------------


def source_positions(task: Task, prompt: Sequence[int], answer: Sequence[int]) -> list[list[int]]:
    """For every answer token, the prompt positions holding what it is computed from
    (the task's own definition: ``Task.source_positions``; [] where it has none)."""
    return task.source_positions(prompt, list(answer))


@torch.no_grad()
def source_scores(
    model: GPT, task: Task, examples: Sequence[Example], batch_size: int = 256
) -> torch.Tensor:
    """Each head's mean attention on the answer's sources: [n_layer, n_head].

    The model reads x = (prompt + answer)[:-1], so answer token j is predicted at query
    position len(prompt) - 1 + j. For each such query, the head's attention summed over
    that token's source positions; averaged over every answer token of every example.
    Answer tokens without a source ([] from the task, e.g. the '.' of dyck) are left out;
    when none has one, the scores are all 0.
    """
    n_layer, n_head = model.config.n_layer, model.config.n_head
    total, count = torch.zeros(n_layer, n_head), 0
    device = next(model.parameters()).device
    for start in range(0, len(examples), batch_size):
        chunk = list(examples[start : start + batch_size])
        data = encode_examples(chunk, task)
        pos = None if data.pos is None else data.pos.to(device)
        patterns = stack_patterns(capture_attention(model, data.x.to(device), pos)).float().cpu()  # (L, B, H, T, T)
        for b, (prompt, answer) in enumerate(chunk):
            for j, sources in enumerate(source_positions(task, prompt, answer)):
                if sources:
                    query = len(prompt) - 1 + j
                    total += patterns[:, b, :, query, sources].sum(-1)  # (L, H)
                    count += 1
    return total / max(count, 1)


# -- attention rollout -----------------------------------------------------------------------


def attention_rollout(patterns: Union[torch.Tensor, Sequence[torch.Tensor]]) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): patterns [L, B, H, T, T] (or a list of
    L [B, H, T, T]) -> [B, T, T], row q = how much position q's output draws on each input.

    Each layer's heads are averaged, the identity is added for the residual connection
    (a position also keeps what it had), rows are renormalised to sum to 1, and the
    layers are multiplied in order: rollout = A_{L-1} @ ... @ A_1 @ A_0.
    """
    if not isinstance(patterns, torch.Tensor):
        patterns = torch.stack(list(patterns))
    if patterns.dim() != 5:
        raise ValueError(f"patterns of shape {tuple(patterns.shape)}: expected [L, B, H, T, T]")
    patterns = patterns.float()
    T = patterns.size(-1)
    eye = torch.eye(T, device=patterns.device)
    rollout = eye.expand(patterns.size(1), T, T)  # (B, T, T)
    for layer in patterns:  # (B, H, T, T)
        mixed = layer.mean(dim=1) + eye  # (B, T, T)
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        rollout = mixed @ rollout
    return rollout
