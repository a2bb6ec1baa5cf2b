"""The mask debugger's parts: checks, a deliberately broken mask, and text views.

For one example it answers "are the causal mask and the loss mask right?" with

1. the alignment table -- position, input token, target token, loss mask: the target
   is the *next* token, and only answer tokens are scored;
2. the causal mask (1 = may look);
3. one head's attention step by step: raw Q.K^T, scaled by 1/sqrt(d_head), masked
   (-inf above the diagonal), softmax;
4. checks, each PASS or FAIL with the number behind it.

``mask_report`` puts the four together as text; ``python -m gptdecoder inspect-masks``
prints it and exits 1 if any check fails, so the command doubles as a test.

Two deliberately broken variants show what the checks catch: ``mask="none"`` removes
the causal mask (a hook on hook_attn_scores hands back the unmasked scores captured
at hook_scores), and ``loss_mask="all"`` scores the prompt tokens too.

Everything here returns values or strings; nothing prints.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from gptdecoder.hooks import HookFn
from gptdecoder.model import GPT
from gptdecoder.tasks import Example, Task, build_example

# Logits at positions <= t may differ by float noise at most this much when tokens after
# t change; a real leak through attention moves them by orders of magnitude more.
CAUSALITY_TOLERANCE = 1e-5
ROW_SUM_TOLERANCE = 1e-5

HookList = list[tuple[str, HookFn]]


@dataclass
class Check:
    """One PASS/FAIL line: what was checked, whether it held, and the number that says so."""

    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name}: {self.detail}"


# -- the deliberately broken variants ---------------------------------------------------------


def no_causal_mask_hooks(n_layer: int) -> HookList:
    """Hooks that undo the causal mask in every layer (the ``mask="none"`` bug).

    hook_scores runs just before hook_attn_scores in the same layer, so the first hook
    remembers the unmasked scores and the second returns them in place of the masked ones.
    """
    unmasked: dict[int, torch.Tensor] = {}
    fwd_hooks: HookList = []
    for layer in range(n_layer):

        def remember(scores: torch.Tensor, hook, layer: int = layer) -> None:
            unmasked[layer] = scores

        def unmask(masked: torch.Tensor, hook, layer: int = layer) -> torch.Tensor:
            return unmasked[layer]

        fwd_hooks.append((f"blocks.{layer}.attn.hook_scores", remember))
        fwd_hooks.append((f"blocks.{layer}.attn.hook_attn_scores", unmask))
    return fwd_hooks


def expected_loss_mask(prompt: Sequence[int], n_positions: int) -> list[int]:
    """1 where the target y[i] is an answer token, i.e. i + 1 >= len(prompt); else 0.

    A task may mark prompt tokens that are predictable as scored (``prompt.scored``, e.g.
    the answered queries of multi-query recall); their targets are 1 too. Written out
    independently of ``build_example`` so that the check compares two derivations
    instead of one with itself.
    """
    scored = getattr(prompt, "scored", frozenset())
    return [1 if i >= len(prompt) - 1 or i + 1 in scored else 0 for i in range(n_positions)]


# -- text views (strings: the command prints them, a notebook may too) ----------------------------


def _label(tokens: Sequence[str], i: int) -> str:
    return f"{i}:{tokens[i]}"


def format_matrix(matrix: torch.Tensor, tokens: Sequence[str], digits: int = 2) -> str:
    """A small [T, T] matrix as text, rows and columns labelled position:token; -inf spelled out."""
    labels = [_label(tokens, i) for i in range(len(tokens))]
    cells = [[("-inf" if math.isinf(v) and v < 0 else f"{v:.{digits}f}") for v in row] for row in matrix.tolist()]
    width = max(max(len(c) for row in cells for c in row), max(len(s) for s in labels))
    row_width = max(len(s) for s in labels)
    header = " " * row_width + " " + " ".join(s.rjust(width) for s in labels)
    lines = [header]
    for label, row in zip(labels, cells):
        lines.append(label.rjust(row_width) + " " + " ".join(c.rjust(width) for c in row))
    return "\n".join(lines)


def alignment_table(symbols: Sequence[str], x: Sequence[int], y: Sequence[int], loss_mask: Sequence[int]) -> str:
    """position | input token | target token | loss mask, one row per position."""
    lines = ["pos  input  target  loss_mask", "---  -----  ------  ---------"]
    for i, (xi, yi, mi) in enumerate(zip(x, y, loss_mask)):
        lines.append(f"{i:>3}  {symbols[xi]:>5}  {symbols[yi]:>6}  {mi:>9}" + ("   <- scored" if mi else ""))
    return "\n".join(lines)


def causal_mask_text(T: int, mask_mode: str) -> str:
    """The mask the model applies: 1 where query i may look at key j."""
    mask = torch.ones(T, T, dtype=torch.long)
    if mask_mode == "causal":
        mask = torch.tril(mask)
    header = "q\\k " + " ".join(f"{j:>2}" for j in range(T))
    return "\n".join([header] + [f"{i:>3} " + " ".join(f"{v:>2}" for v in row) for i, row in enumerate(mask.tolist())])


# -- the head, step by step ------------------------------------------------------------------


@torch.no_grad()
def head_steps(
    model: GPT, idx: torch.Tensor, layer: int, head: int, fwd_hooks: HookList = ()
) -> dict[str, torch.Tensor]:
    """One head's attention for idx (1, T), as four [T, T] matrices in computation order.

    ``Q.K^T`` is recomputed from hook_q / hook_k; the other three are what the model
    itself produced at hook_scores / hook_attn_scores / hook_pattern (with any
    ``fwd_hooks`` -- e.g. the broken mask -- in effect).
    """
    prefix = f"blocks.{layer}.attn."
    names = [prefix + n for n in ("hook_q", "hook_k", "hook_scores", "hook_attn_scores", "hook_pattern")]
    with model.hooks(fwd_hooks=list(fwd_hooks)):
        _, cache = model.run_with_cache(idx, names_filter=names)
    q, k = cache[prefix + "hook_q"][0, :, head], cache[prefix + "hook_k"][0, :, head]  # (T, hs)
    return {
        "Q.K^T (raw)": q @ k.T,
        f"scaled: Q.K^T / sqrt(d_head={q.size(-1)})": cache[prefix + "hook_scores"][0, head],
        "masked: -inf where key > query": cache[prefix + "hook_attn_scores"][0, head],
        "softmax: the attention pattern": cache[prefix + "hook_pattern"][0, head],
    }


# -- the checks -------------------------------------------------------------------------------


@torch.no_grad()
def check_patterns(model: GPT, idx: torch.Tensor, fwd_hooks: HookList = ()) -> list[Check]:
    """Every layer and head: exact zeros above the diagonal, and rows summing to 1."""
    n_layer = model.config.n_layer
    with model.hooks(fwd_hooks=list(fwd_hooks)):
        _, cache = model.run_with_cache(idx, names_filter=lambda n: n.endswith("attn.hook_pattern"))
    patterns = torch.stack([cache[f"blocks.{i}.attn.hook_pattern"] for i in range(n_layer)])  # (L, B, nh, T, T)
    T = patterns.size(-1)
    future = ~torch.tril(torch.ones(T, T, dtype=torch.bool, device=patterns.device))
    above = patterns[..., future].abs().max().item() if T > 1 else 0.0
    row_error = (patterns.sum(dim=-1) - 1.0).abs().max().item()
    return [
        Check("attention is exactly 0 above the diagonal (every layer, head)", above == 0.0,
              f"max weight on a future key = {above:.3g}"),
        Check("every attention row sums to 1", row_error <= ROW_SUM_TOLERANCE,
              f"max |row sum - 1| = {row_error:.3g} (tolerance {ROW_SUM_TOLERANCE:g})"),
    ]


def check_loss_mask(loss_mask: Sequence[int], prompt: Sequence[int]) -> Check:
    """The loss mask is 1 exactly at the positions whose target is an answer (or scored) token."""
    expected = expected_loss_mask(prompt, len(loss_mask))
    wrong = [i for i, (got, want) in enumerate(zip(loss_mask, expected)) if bool(got) != bool(want)]
    answer = [i for i, w in enumerate(expected) if w]
    span = f"{answer[0]}..{answer[-1]}" if answer == list(range(answer[0], answer[-1] + 1)) else str(answer)
    detail = f"answer targets at positions {span}; mask wrong at {wrong or 'none'}"
    return Check("loss mask covers exactly the answer positions", not wrong, detail)


@torch.no_grad()
def check_causality(model: GPT, idx: torch.Tensor, vocab_size: int, fwd_hooks: HookList = ()) -> Check:
    """Changing the tokens after position t must leave the logits at positions <= t unchanged.

    All t at once: row t of a batch is idx with every token after t replaced by a
    different one; the worst difference over t is reported.
    """
    x = idx[0]
    T = x.numel()
    changed = x.repeat(T, 1)  # row t: tokens after t changed
    after = torch.triu(torch.ones(T, T, dtype=torch.bool, device=idx.device), diagonal=1)
    changed[after] = (changed[after] + 1) % vocab_size
    with model.hooks(fwd_hooks=list(fwd_hooks)):
        base, _ = model(idx)
        logits, _ = model(changed)
    visible = ~after  # row t: positions <= t must not have changed
    diff = (logits - base).abs().amax(dim=-1)[visible]  # max over vocab, at positions <= t
    worst = diff.max().item()
    return Check("changing tokens after position t leaves logits at <= t unchanged (all t)",
                 worst <= CAUSALITY_TOLERANCE,
                 f"max |logit difference| = {worst:.3g} (tolerance {CAUSALITY_TOLERANCE:g})")


def check_gradient(
    model: GPT, idx: torch.Tensor, targets: torch.Tensor, loss_mask: torch.Tensor,
    prompt: Sequence[int], fwd_hooks: HookList = (),
) -> Check:
    """No gradient from the loss reaches the logits at prompt positions (their targets are masked).

    Uses the model's own loss (as training does), so this tests the loss path end to end.
    """
    model.zero_grad(set_to_none=True)
    with model.hooks(fwd_hooks=list(fwd_hooks)):
        logits, loss = model(idx, targets=targets, loss_mask=loss_mask)
    logits.retain_grad()
    loss.backward()
    prompt_positions = [i for i, w in enumerate(expected_loss_mask(prompt, idx.size(1))) if not w]
    grad = logits.grad[0, prompt_positions].abs().max().item() if prompt_positions else 0.0
    model.zero_grad(set_to_none=True)
    return Check("no gradient reaches the logits of masked (prompt) targets", grad == 0.0,
                 f"max |d loss / d logits| at positions {prompt_positions} = {grad:.3g}")


# -- the whole report -------------------------------------------------------------------------

# Held-out examples are numbered within this fixed pool, so example N is the same
# prompt every time (test_examples returns a seeded sample of this size).
EXAMPLE_POOL = 256


def held_out_examples(task: Task) -> list[Example]:
    """The fixed pool of held-out examples the debugger numbers (the same list on every call)."""
    return task.test_examples(EXAMPLE_POOL, seed=0)


@dataclass
class MaskReport:
    """The debugger's text (alignment, mask, one head step by step, checks) and the checks."""

    text: str
    checks: list[Check]

    @property
    def failed(self) -> int:
        return sum(not check.passed for check in self.checks)


def mask_report(
    model: GPT,
    task: Task,
    example: Example,
    layer: int = 0,
    head: int = 0,
    mask: str = "causal",
    loss_mask: str = "answer",
    example_index: Optional[int] = None,
) -> MaskReport:
    """Sections 1-4 of the mask debugger for one (prompt, answer) example.

    ``mask="none"`` and ``loss_mask="all"`` plant the two deliberate bugs; the checks
    must then FAIL. ``example_index`` only labels the text ("held-out example N").
    """
    if mask not in ("causal", "none"):
        raise ValueError(f"mask={mask!r}: expected 'causal' or 'none'")
    if loss_mask not in ("answer", "all"):
        raise ValueError(f"loss_mask={loss_mask!r}: expected 'answer' or 'all'")
    n_layer, n_head = model.config.n_layer, model.config.n_head
    if not (0 <= layer < n_layer and 0 <= head < n_head):
        raise ValueError(f"layer {layer}, head {head}: the model has layers 0..{n_layer - 1}, heads 0..{n_head - 1}")

    prompt, answer = example
    x, y, targets_scored = build_example(prompt, answer)
    if loss_mask == "all":
        targets_scored = [1] * len(targets_scored)
    device = next(model.parameters()).device
    idx, targets = torch.tensor([x], device=device), torch.tensor([y], device=device)
    tokens = [task.symbols[t] for t in x]
    broken = no_causal_mask_hooks(n_layer) if mask == "none" else []

    which = f"held-out example {example_index}" if example_index is not None else "example"
    lines = [f"task: {task.name}, {which}: prompt {task.format(prompt)!r} -> answer {task.format(answer)!r}"]
    if mask == "none" or loss_mask == "all":
        lines.append(f"deliberately broken: mask={mask}, loss-mask={loss_mask} -- the checks below should FAIL")
    lines += ["\n1. Alignment: the model reads input[i] and is trained to predict target[i] = input[i+1]",
              alignment_table(task.symbols, x, y, targets_scored),
              f"\n2. Attention mask ({mask}): 1 = query row may look at key column",
              causal_mask_text(len(x), mask),
              f"\n3. Layer {layer}, head {head}, step by step (rows: query position:token, columns: key)"]
    for title, matrix in head_steps(model, idx, layer, head, broken).items():
        lines.append(f"\n{title}\n{format_matrix(matrix, tokens, digits=3)}")

    checks = check_patterns(model, idx, broken) + [
        check_loss_mask(targets_scored, prompt),
        check_causality(model, idx, task.vocab_size, broken),
        check_gradient(model, idx, targets, torch.tensor([targets_scored], device=device), prompt, broken),
    ]
    failed = sum(not c.passed for c in checks)
    lines += ["\n4. Checks", *(check.line() for check in checks), f"\n{len(checks) - failed} passed, {failed} failed"]
    return MaskReport("\n".join(lines), checks)
