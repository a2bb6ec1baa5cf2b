"""Clean prompts and their corrupted twins, and the metric that tells them apart.

Activation patching asks which parts of a model carry the difference between a clean
prompt and a corrupted twin of the same length whose answer differs (``Task.corrupt``).
The metric is the logit difference between the clean and the corrupted answer tokens,
averaged over the answer positions where they differ (``metric="kl"``: minus the KL
divergence from the clean run's predictions).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from gptdecoder.lab.ablation import HeldOut, encode_examples
from gptdecoder.tasks import Example, Task

METRICS = ("logit_diff", "kl")

@dataclass(frozen=True)
class Pairs:
    """Clean prompts and their corrupted twins, teacher-forced as in training: row i of
    ``corrupted`` is the twin of row i of ``clean``, of the same length."""

    clean: HeldOut
    corrupted: HeldOut
    differs: torch.Tensor  # (N, T) bool: answer positions where the clean and corrupted targets differ
    description: str = ""  # what the corruption changes, in words

    def __len__(self) -> int:
        return self.clean.x.size(0)

    def to(self, device: torch.device) -> "Pairs":
        move = lambda h: HeldOut(*(None if t is None else t.to(device) for t in (h.x, h.y, h.mask, h.pos)))
        return Pairs(move(self.clean), move(self.corrupted), self.differs.to(device), self.description)


def pairs_from_examples(clean: Sequence[Example], corrupted: Sequence[Example], task: Optional[Task] = None,
                        description: str = "") -> Pairs:
    """Pairs from (prompt, answer) examples, row by row (``task`` gives coupled position ids)."""
    if len(clean) != len(corrupted) or not clean:
        raise ValueError(f"{len(clean)} clean and {len(corrupted)} corrupted examples: expected as many, at least one")
    for (p, a), (q, b) in zip(clean, corrupted):
        if len(p) != len(q) or len(a) != len(b):
            raise ValueError(f"a corrupted example must have its clean one's prompt and answer lengths: "
                             f"{len(p)}+{len(a)} vs {len(q)}+{len(b)} tokens")
    c, d = encode_examples(clean, task), encode_examples(corrupted, task)
    if (c.pos is None) != (d.pos is None) or (c.pos is not None and not torch.equal(c.pos, d.pos)):
        raise ValueError("a corrupted example must have its clean one's position ids (no sender carries positions given as ids)")
    differs = (c.mask == 1) & (c.y != d.y) & (c.y >= 0)
    if not bool(differs.any()):
        raise ValueError("no answer token differs between the clean and the corrupted examples: nothing to trace")
    return Pairs(c, d, differs, description)


def make_pairs(task: Task, n: int = 256, seed: int = 0) -> Pairs:
    """``n`` clean/corrupted pairs for a task, at its longest training length: held-out
    prompts first, then training-side ones if the held-out side has fewer (a circuit is
    about the mechanism, not about generalising)."""
    span = task.length_range
    variant = task.length_variant(span[1]) if span else task
    rng = random.Random(seed)
    clean: list[Example] = []
    corrupted: list[Example] = []
    for side in (variant.test_examples, variant.train_examples):  # the training side only when needed
        if len(clean) == n:
            break
        for prompt, answer in side(n, seed):
            if len(clean) == n:
                break
            twin = variant.corrupt(prompt, rng)
            if twin is not None:
                clean.append((prompt, answer))
                corrupted.append((twin, variant.solve(twin)))
    if not clean:
        raise ValueError(f"task {task.name!r} gave no corrupted prompt that changes the answer")
    return pairs_from_examples(clean, corrupted, task, task.corruption)


def logit_difference(logits: torch.Tensor, pairs: Pairs) -> torch.Tensor:
    """Mean over the differing answer positions of logit(clean token) - logit(corrupted token)."""
    clean_y = pairs.clean.y.clamp(min=0)[..., None]
    corrupted_y = pairs.corrupted.y.clamp(min=0)[..., None]
    diff = (logits.gather(-1, clean_y) - logits.gather(-1, corrupted_y))[..., 0]  # (N, T)
    weights = pairs.differs.to(diff.dtype)
    return (diff * weights).sum() / weights.sum()


def metric_fn(metric: str, pairs: Pairs, clean_logits: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """logits -> a scalar that is high for the clean behaviour."""
    if metric == "logit_diff":
        return lambda logits: logit_difference(logits, pairs)
    if metric == "kl":
        reference = F.log_softmax(clean_logits.detach().float(), dim=-1)
        where = pairs.clean.mask == 1  # every answer position

        def minus_kl(logits: torch.Tensor) -> torch.Tensor:
            log_p = F.log_softmax(logits.float(), dim=-1)
            kl = (reference.exp() * (reference - log_p)).sum(-1)  # (N, T)
            return -kl[where].mean()
        return minus_kl
    raise ValueError(f"metric={metric!r}: expected one of {', '.join(METRICS)}")

