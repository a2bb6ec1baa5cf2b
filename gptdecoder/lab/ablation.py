"""Knock out heads, patch activations, and score a task with each head removed.

Everything here is a small function over the hook API of gptdecoder/hooks.py, so it
reads as "run the model, but at hook point X do Y":

* ``ablate_heads`` -- run with some heads' outputs (``hook_z``, one slice per head)
  replaced by zeros or by their mean over a reference batch.
* ``patch_activations`` -- run a corrupted input but paste in activations from a
  clean run at one hook point, optionally only at some positions or heads.
* ``head_ablation_scores`` -- held-out exact match with each head ablated in turn:
  which heads does the task depend on? (``python -m gptdecoder ablate`` prints it.)
* ``ablation_rows`` -- those scores as the one ranking of heads, most harmful first
  (``ablate``'s table and the explain report's both use it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import torch

from gptdecoder.data.tasks import collate
from gptdecoder.hooks import HookFn
from gptdecoder.lab.capture import Cache, z_name
from gptdecoder.model import GPT
from gptdecoder.tasks import Example, Task

Head = tuple[int, int]  # (layer, head)


# -- head ablation -----------------------------------------------------------------------


def _heads_by_layer(heads: Iterable[Head]) -> dict[int, list[int]]:
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(int(layer), []).append(int(head))
    return by_layer


@torch.no_grad()
def mean_head_outputs(model: GPT, reference_idx: torch.Tensor,
                      position_ids: Optional[torch.Tensor] = None) -> dict[int, torch.Tensor]:
    """Each layer's hook_z averaged over a reference batch: {layer: [T, heads, d_head]}.

    The mean keeps one value per position, because what a head writes usually depends
    on where it is (for a task, position 3 is always inside the prompt); averaging over
    positions as well would feed the model something it never saw.
    """
    n_layer = model.config.n_layer
    _, cache = model.run_with_cache(reference_idx, names_filter=[z_name(i) for i in range(n_layer)],
                                    position_ids=position_ids)
    return {i: cache[z_name(i)].mean(dim=0) for i in range(n_layer)}


def ablation_hooks(
    heads: Iterable[Head],
    mode: str = "zero",
    means: Optional[Mapping[int, torch.Tensor]] = None,
) -> list[tuple[str, HookFn]]:
    """Forward hooks that replace the chosen heads' hook_z by zeros or by ``means``.

    hook_z is [B, T, heads, d_head]: one slice per head, before the heads are mixed by
    c_proj, so it is the natural place to remove exactly one head's contribution.
    ``mode="mean"`` needs ``means`` from ``mean_head_outputs``: an input as long as the
    reference batch, or shorter and starting at position 0, which then takes the means of
    its own positions (a causal model's position t sees only positions <= t). A KV-cached
    step (one token at a later position) cannot be mean-ablated this way: recompute.
    """
    if mode not in ("zero", "mean"):
        raise ValueError(f"mode={mode!r}: expected 'zero' or 'mean'")
    if mode == "mean" and means is None:
        raise ValueError("mode='mean' needs means=mean_head_outputs(model, reference_idx)")
    fwd_hooks = []
    for layer, layer_heads in _heads_by_layer(heads).items():

        def replace(z: torch.Tensor, hook, layer: int = layer, layer_heads: list[int] = layer_heads) -> torch.Tensor:
            z = z.clone()  # never edit the tensor in place: other hooks may hold it
            if mode == "zero":
                z[:, :, layer_heads] = 0.0
            else:
                mean = means[layer]
                if mean.size(0) < z.size(1):
                    raise ValueError(
                        f"mean ablation: reference batch has {mean.size(0)} positions, input has {z.size(1)}"
                    )
                z[:, :, layer_heads] = mean[None, : z.size(1), layer_heads].to(z.dtype)
            return z

        fwd_hooks.append((z_name(layer), replace))
    return fwd_hooks


@torch.no_grad()
def ablate_heads(
    model: GPT,
    idx: torch.Tensor,
    heads: Iterable[Head],
    mode: str = "zero",
    reference_idx: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Logits (B, T, vocab) for idx with the given (layer, head) pairs ablated.

    ``mode="zero"`` sets the heads' outputs to 0; ``mode="mean"`` to their mean over
    ``reference_idx`` (a batch of inputs like idx), which removes what the head says
    about *this* input while keeping its average contribution.
    """
    means = None
    if mode == "mean":
        if reference_idx is None:
            raise ValueError("mode='mean' needs reference_idx, a batch to average the heads over")
        means = mean_head_outputs(model, reference_idx)
    with model.hooks(fwd_hooks=ablation_hooks(heads, mode, means)):
        logits, _ = model(idx)
    return logits


# -- activation patching -------------------------------------------------------------


def _position_and_head_dims(name: str) -> tuple[int, Optional[int]]:
    """(position dim, head dim or None) of a hook point's activation (see hooks.py table).

    Attention matrices [B, heads, query, key] are patched per query position.
    """
    last = name.rsplit(".", 1)[-1]
    if last in ("hook_scores", "hook_attn_scores", "hook_masked_scores", "hook_pattern"):  # [B, nh, T_q, T_k]
        return 2, 1
    if last in ("hook_q", "hook_k", "hook_v", "hook_z"):
        return 1, 2
    return 1, None


@torch.no_grad()
def patch_activations(
    model: GPT,
    corrupted_idx: torch.Tensor,
    clean_cache: Cache,
    hook_name: str,
    positions: Optional[Sequence[int]] = None,
    heads: Optional[Sequence[int]] = None,
) -> torch.Tensor:
    """Logits of corrupted_idx with ``hook_name`` overwritten from ``clean_cache``.

    ``positions`` (default: all) and ``heads`` (default: all; only for hook points
    that have a head axis) restrict what is copied. If patching one activation
    restores the clean answer, that activation carries the information that differs
    between the two inputs.
    """
    if hook_name not in clean_cache:
        raise KeyError(f"{hook_name!r} is not in the clean cache; capture it with names_filter")
    clean = clean_cache[hook_name]
    pos_dim, head_dim = _position_and_head_dims(hook_name)
    if heads is not None and head_dim is None:
        raise ValueError(f"{hook_name} has no head axis; patch it without heads=")

    def patch(act: torch.Tensor, hook) -> torch.Tensor:
        if act.shape != clean.shape:
            raise ValueError(f"{hook_name}: clean activation {tuple(clean.shape)} vs corrupted {tuple(act.shape)}")
        take_clean = torch.ones(act.shape, dtype=torch.bool, device=act.device)
        for dim, chosen in ((pos_dim, positions), (head_dim, heads)):
            if chosen is None:
                continue
            selected = torch.zeros(act.size(dim), dtype=torch.bool, device=act.device)
            selected[list(chosen)] = True
            shape = [1] * act.dim()
            shape[dim] = -1
            take_clean &= selected.view(shape)  # broadcast along every other axis
        return torch.where(take_clean, clean.to(act.dtype), act)

    with model.hooks(fwd_hooks=[(hook_name, patch)]):
        logits, _ = model(corrupted_idx)
    return logits


# -- held-out accuracy with each head ablated --------------------------------------------------


@dataclass
class HeldOut:
    """A batch of held-out examples, right-padded to one length.

    Right padding is harmless in a causal model: position i never sees what follows it.
    Padded positions have target -1 and loss mask 0, so they are never scored.
    """

    x: torch.Tensor  # (N, T) inputs
    y: torch.Tensor  # (N, T) targets, -1 at padding
    mask: torch.Tensor  # (N, T) 1 where the target is an answer token
    pos: Optional[torch.Tensor] = None  # (N, T) position ids, for a task that couples them

    def chunks(self, batch_size: int, device: Optional[torch.device] = None) -> Iterator["HeldOut"]:
        """The examples in consecutive slices of at most batch_size, moved to ``device``."""
        for start in range(0, self.x.size(0), batch_size):
            yield HeldOut(*(None if t is None else t[start : start + batch_size].to(device or t.device)
                            for t in (self.x, self.y, self.mask, self.pos)))


def encode_examples(examples: Sequence[Example], task: Optional[Task] = None) -> HeldOut:
    """(prompt, answer) pairs -> padded tensors, exactly as training batches them (with the
    position ids of a ``task`` that couples positions, at offset 0 as in evaluation)."""
    if not examples:
        raise ValueError("encode_examples: no examples")
    return HeldOut(*collate(list(examples), task=task))


@torch.no_grad()
def exact_match(
    model: GPT, data: HeldOut, fwd_hooks: Sequence[tuple[str, HookFn]] = (), batch_size: int = 1024
) -> float:
    """Share of examples whose every answer token is the model's top prediction.

    One teacher-forced forward pass instead of decoding: greedy decoding reproduces the
    whole answer exactly when, at each answer position, the argmax given the correct
    prefix is the correct token -- which is what this counts. It is therefore the
    same number as generate-and-compare, but works with any hook (per-position mean
    ablation included) and costs one pass.
    """
    correct = 0
    with model.hooks(fwd_hooks=list(fwd_hooks)):
        for chunk in data.chunks(batch_size):
            logits, _ = model(chunk.x, position_ids=chunk.pos)
            right = (logits.argmax(dim=-1) == chunk.y) | (chunk.mask == 0)
            correct += int(right.all(dim=1).sum())
    return correct / max(1, data.x.size(0))


@torch.no_grad()
def token_accuracy(model: GPT, data: HeldOut, fwd_hooks: Sequence[tuple[str, HookFn]] = (),
                   batch_size: int = 1024) -> float:
    """Share of scored positions (mask 1) whose target is the model's top prediction: the
    measure for text, where a whole window is never exactly right."""
    correct = total = 0
    with model.hooks(fwd_hooks=list(fwd_hooks)):
        for chunk in data.chunks(batch_size):
            logits, _ = model(chunk.x, position_ids=chunk.pos)
            scored = chunk.mask > 0
            correct += int(((logits.argmax(dim=-1) == chunk.y) & scored).sum())
            total += int(scored.sum())
    return correct / max(1, total)


def head_ablation_scores(model: GPT, data: HeldOut, mode: str = "zero",
                         measure: Callable[..., float] = exact_match) -> tuple[float, torch.Tensor]:
    """(accuracy without ablation, [layer, head] accuracy with that one head ablated), by
    ``measure`` (exact_match for a task, token_accuracy for text).

    Mean ablation averages each head over the held-out batch itself, per position
    (for tasks of varying length the padding at a position is part of its mean).
    """
    means = mean_head_outputs(model, data.x, data.pos) if mode == "mean" else None
    n_layer, n_head = model.config.n_layer, model.config.n_head
    scores = torch.zeros(n_layer, n_head)
    for layer in range(n_layer):
        for head in range(n_head):
            scores[layer, head] = measure(model, data, ablation_hooks([(layer, head)], mode, means))
    return measure(model, data), scores


def ablation_rows(baseline: float, scores: Union[torch.Tensor, Sequence[Sequence[float]]]) -> list[dict]:
    """One row per head, most harmful ablation first: layer, head, accuracy, drop.

    ``scores`` is [layer][head] exact match with that head ablated (the tensor of
    ``head_ablation_scores``, or the same as nested lists). The one ranking of heads by
    ablation: the ``ablate`` command's table and the explain report's both come from it.
    """
    grid = scores.tolist() if isinstance(scores, torch.Tensor) else scores
    # rounded, + 0.0: a drop of -1e-8 (float noise in equal accuracies) must read 0, not "-0.000"
    rows = [{"layer": layer, "head": head, "accuracy": float(acc), "drop": round(float(baseline) - float(acc), 6) + 0.0}
            for layer, row in enumerate(grid) for head, acc in enumerate(row)]
    return sorted(rows, key=lambda r: (-r["drop"], r["layer"], r["head"]))


def markdown_table(rows: list[dict], baseline: float, mode: str) -> str:
    """The ablation rows as a markdown table under a one-line caption (pastes into a README)."""
    lines = [f"Held-out exact match with one head {mode}-ablated (no ablation: {baseline:.3f})", "",
             "| layer | head | accuracy | drop |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['layer']} | {r['head']} | {r['accuracy']:.3f} | {r['drop']:+.3f} |" for r in rows]
    return "\n".join(lines) + "\n"
