"""Read the residual stream as logits: the logit lens and direct logit attribution.

* ``logit_lens`` -- decode the residual stream after every block (and the embeddings)
  through the final LayerNorm and the unembedding, as if the model stopped there: at
  which layer is the answer already on top?
* ``direct_logit_attribution`` -- split the answer's logit margin into what each head,
  each MLP and the embeddings write straight into the residual stream.

Both score the answer positions of a ``HeldOut`` batch (``data.mask == 1``, targets
``data.y``; gptdecoder/lab/ablation.py). They are pure functions and run the model as
it is: call ``model.eval()`` first, or dropout makes the numbers random (and the
attribution no longer adds up).
"""
from __future__ import annotations

from typing import Iterator

import torch

from gptdecoder.lab.ablation import HeldOut
from gptdecoder.lab.capture import z_name
from gptdecoder.model import GPT


def _batches(data: HeldOut, batch_size: int, device: torch.device) -> Iterator[tuple[torch.Tensor, ...]]:
    """(x, y, answer, position ids or None) chunks of a HeldOut batch on ``device``; answer
    is bool (N, T)."""
    for chunk in data.chunks(batch_size, device):
        yield chunk.x, chunk.y, chunk.mask == 1, chunk.pos


def answer_rank(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """logits (n, vocab), target (n,) -> the target's rank (n,); 0 = top-1.

    Ties are broken as argmax breaks them (the lower id first), so rank 0 exactly when
    the argmax is the target: a row of equal logits ranks target t at t, not at 0.
    """
    correct = logits.gather(-1, target[:, None])  # (n, 1)
    ids = torch.arange(logits.size(-1), device=logits.device)
    ahead = (logits > correct) | ((logits == correct) & (ids < target[:, None]))
    return ahead.sum(dim=-1)


def resid_names(n_layer: int) -> list[str]:
    """The residual stream before block 0 (the embeddings) and after every block."""
    return ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(n_layer)]


@torch.no_grad()
def logit_lens(model: GPT, data: HeldOut, batch_size: int = 256) -> dict:
    """Answer accuracy and mean rank of the residual stream read as logits, layer by layer.

    Returns {"accuracy": Tensor[n_layer + 1], "mean_rank": Tensor[n_layer + 1]}: entry 0
    reads the embeddings, entry i the residual stream after block i-1, each through
    ln_final and lm_head. The last entry is the model's own output. Scored per answer
    token (every position with data.mask == 1, against data.y): accuracy is the share
    whose top-1 is the target, mean_rank the mean rank of the target (0 = top-1).
    """
    names = resid_names(model.config.n_layer)
    correct, rank_sum, count = torch.zeros(len(names)), torch.zeros(len(names)), 0
    for x, y, answer, pos in _batches(data, batch_size, next(model.parameters()).device):
        _, cache = model.run_with_cache(x, names_filter=names, position_ids=pos)
        target = y[answer]  # (n,)
        for i, name in enumerate(names):
            logits = model.lm_head(model.ln_final(cache[name][answer]))  # (n, vocab)
            ranks = answer_rank(logits.float(), target).cpu()
            correct[i] += (ranks == 0).sum()
            rank_sum[i] += ranks.sum()
        count += target.numel()
    return {"accuracy": correct / max(count, 1), "mean_rank": rank_sum / max(count, 1)}


@torch.no_grad()
def direct_logit_attribution(model: GPT, data: HeldOut, batch_size: int = 256) -> dict:
    """What each part writes straight into the answer's logit margin, averaged over answer tokens.

    The margin is logit[correct] - mean over the vocabulary of the logits. The final
    residual stream is a sum of parts (embeddings, each head, each layer's c_proj bias,
    each MLP), and everything after it is linear once ln_final's scale is fixed at its
    actual value: centre, divide by ``ln_final.hook_scale``, times ``ln_final.weight``,
    then lm_head. So each part's contribution is that map applied to the part alone,
    and the contributions plus ln_final's bias term add up to the margin.

    A head's part is its slice of hook_z through its own columns of c_proj.weight; the
    c_proj bias belongs to no head and is reported per layer. An MLP's part is its whole
    output (its biases included). Returns {"heads": Tensor[n_layer, n_head], "mlps":
    Tensor[n_layer], "attn_bias": Tensor[n_layer], "embed": float (token + position),
    "ln_final_bias": float, "total": float (the model's actual mean margin)}.
    """
    cfg = model.config
    L, H, hs, d = cfg.n_layer, cfg.n_head, cfg.d_head, cfg.d_model
    normed = "ln_final.hook_scale" in model.hook_dict  # False with model.norm none: the final "norm" is the identity
    names = ["hook_embed"] + (["ln_final.hook_scale"] if normed else [])
    names += [n for n in ["hook_pos_embed"] if n in model.hook_dict]
    names += [z_name(i) for i in range(L)] + [f"blocks.{i}.hook_mlp_out" for i in range(L)]
    heads, mlps, attn_bias = torch.zeros(L, H), torch.zeros(L), torch.zeros(L)
    embed = ln_final_bias = total = 0.0
    count = 0
    unembed = model.lm_head.weight.float()  # (vocab, d)
    gain = model.ln_final.weight.float() if normed else torch.ones(d, device=unembed.device)  # (d,)
    for x, y, answer, pos in _batches(data, batch_size, next(model.parameters()).device):
        logits, cache = model.run_with_cache(x, names_filter=names, position_ids=pos)
        target = y[answer]  # (n,)
        direction = unembed[target] - unembed.mean(dim=0)  # (n, d): margin per unit of ln_final output
        scale = cache["ln_final.hook_scale"][answer].float() if normed else torch.ones(len(target), 1, device=unembed.device)  # (n, 1)

        def margin(part: torch.Tensor) -> torch.Tensor:
            """part (n, ..., d) in the residual stream -> its share of the margin (n, ...)."""
            centered = part - part.mean(dim=-1, keepdim=True) if normed else part
            extra = part.dim() - 2  # axes between n and d (e.g. heads)
            per_unit = (direction * gain).view(direction.size(0), *([1] * extra), d)
            return (centered * per_unit).sum(dim=-1) / scale.view(-1, *([1] * extra))

        embedded = cache["hook_embed"] + cache["hook_pos_embed"] if "hook_pos_embed" in cache else cache["hook_embed"]
        embed += margin(embedded[answer].float()).sum().item()
        for layer, block in enumerate(model.blocks):
            z = cache[z_name(layer)][answer].float()  # (n, H, hs)
            w_out = block.attn.c_proj.weight.float().view(d, H, hs)  # head h's columns: [:, h, :]
            head_out = torch.einsum("nhe,dhe->nhd", z, w_out)  # (n, H, d)
            heads[layer] += margin(head_out).sum(dim=0).cpu()
            if block.attn.c_proj.bias is not None:
                attn_bias[layer] += margin(block.attn.c_proj.bias.float().expand(len(target), d)).sum().item()
            mlps[layer] += margin(cache[f"blocks.{layer}.hook_mlp_out"][answer].float()).sum().item()
        if getattr(model.ln_final, "bias", None) is not None:
            ln_final_bias += (direction @ model.ln_final.bias.float()).sum().item()
        answer_logits = logits[answer].float()  # (n, vocab)
        total += (answer_logits.gather(-1, target[:, None])[:, 0] - answer_logits.mean(dim=-1)).sum().item()
        count += target.numel()
    n = max(count, 1)
    return {"heads": heads / n, "mlps": mlps / n, "attn_bias": attn_bias / n,
            "embed": embed / n, "ln_final_bias": ln_final_bias / n, "total": total / n}
