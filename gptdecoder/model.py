"""A GPT-2-style decoder, written to be read.

One concept per class: CausalSelfAttention, MLP, Block, GPT. Tensor shapes are in
the comments (B = batch, T = positions, C = d_model, nh = heads, hs = head size).
Every interesting tensor passes through a named HookPoint (see gptdecoder/hooks.py
for the table of names and shapes), which is how the attention lab reads and edits
the model without changing its code. Module, Linear, LayerNorm, Embedding, GELU and
Dropout are torch.nn's, with less Python overhead per call (gptdecoder/layers.py says
why: it makes KV-cache generation ~1.3x faster); read them as nn.Module, nn.Linear, ...
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from gptdecoder import hooks as _hooks
from gptdecoder.hooks import HookPoint
# nn.Linear, nn.LayerNorm, ... and nn.Module with less Python overhead per call (see layers.py)
from gptdecoder.layers import GELU, Dropout, Embedding, LayerNorm, Linear, Module


# config name -> the GELU it means (nn.GELU's `approximate` argument)
ACTIVATIONS = {"gelu_tanh": "tanh", "gelu": "none"}


@dataclass
class GPTConfig:
    vocab_size: int = 50257
    block_size: int = 1024  # longest sequence the model can see (learned positions)
    n_layer: int = 12
    n_head: int = 12
    d_model: int = 768
    mlp_ratio: int = 4
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm, as GPT-2
    tie_weights: bool = True  # LM head shares the token embedding matrix, as GPT-2
    # "gelu_tanh": GPT-2's tanh approximation; "gelu": the exact erf GELU (nanoGPT's
    # choice), about 2x cheaper than the tanh one on CPU
    activation: str = "gelu_tanh"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "d_model", "mlp_ratio"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"model.{name}={value!r}: expected a positive integer")
        if self.d_model % self.n_head != 0:
            raise ValueError(
                f"model.d_model={self.d_model} is not divisible by model.n_head={self.n_head}: "
                f"pick d_model as a multiple of n_head (e.g. {self.n_head * max(1, self.d_model // self.n_head)})"
            )
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout={self.dropout!r}: expected a number in [0, 1)")
        for name in ("bias", "tie_weights"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"model.{name}={getattr(self, name)!r}: expected true or false")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"model.activation={self.activation!r}: expected one of {', '.join(ACTIVATIONS)}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_head


class HookedLayerNorm(LayerNorm):
    """LayerNorm with a hook on its output (used for ln_final.hook_normalized)."""

    def __init__(self, d_model: int, bias: bool) -> None:
        super().__init__(d_model, bias=bias)
        self.hook_normalized = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hook_normalized(super().forward(x))


class CausalSelfAttention(Module):
    """Multi-head self-attention where position t sees only positions <= t.

    Two paths compute the same thing. The fast one calls the fused
    F.scaled_dot_product_attention; the explicit one materialises scores, masked
    scores and the pattern so hooks can see (or edit) them. The explicit path is
    taken when one of those three hook points has a hook, when ``self.explicit``
    is set, or when training on CPU under bf16 autocast, where it is faster.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.d_head = config.d_head
        self.dropout = config.dropout
        self.explicit = False
        self.c_attn = Linear(config.d_model, 3 * config.d_model, bias=config.bias)  # q, k, v at once
        self.c_proj = Linear(config.d_model, config.d_model, bias=config.bias)
        self.attn_dropout = Dropout(config.dropout)
        # mask[i, j] is True where query i may look at key j (j <= i)
        mask = torch.tril(torch.ones(config.block_size, config.block_size, dtype=torch.bool))
        self.register_buffer("causal_mask", mask, persistent=False)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_scores, self.hook_masked_scores, self.hook_pattern = HookPoint(), HookPoint(), HookPoint()
        self.hook_z = HookPoint()

    def needs_pattern(self) -> bool:
        return bool(self.explicit or self.hook_scores.fns or self.hook_masked_scores.fns or self.hook_pattern.fns)

    @staticmethod
    def fused_is_slow(x: torch.Tensor) -> bool:
        """True when training on CPU under bf16 autocast.

        There the fused kernel's bf16 *backward* is the slowest op of a step at small
        sizes (torch 2.13, T=64, head size 32); plain batched matmuls compute the same
        thing and make the whole training step ~1.5x faster (measured: 46 vs 70 ms).
        """
        return (
            torch.is_grad_enabled()  # first: False during generation, the one cheap test per layer
            and x.device.type == "cpu"
            and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16
        )

    def forward(self, x: torch.Tensor, kv_cache: Optional["KVCache"] = None, layer: int = 0) -> torch.Tensor:
        B, T, C = x.shape
        # c_attn's output (B, T, 3C) is q, k, v side by side, each nh heads of hs numbers
        q, k, v = self.c_attn(x).view(B, T, 3, self.n_head, self.d_head).unbind(2)  # each (B, T, nh, hs)
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, nh, T, hs)
        if kv_cache is not None:
            k, v = kv_cache.append(layer, k, v)  # (B, nh, T_k, hs): all keys so far
        T_k = k.size(2)

        if self.needs_pattern() or self.fused_is_slow(x):
            # the T new queries sit at positions T_k - T ... T_k - 1
            mask = self.causal_mask[T_k - T : T_k, :T_k]  # (T, T_k)
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.d_head))  # (B, nh, T, T_k)
            scores = self.hook_scores(scores)
            masked = self.hook_masked_scores(scores.masked_fill(~mask, float("-inf")))
            pattern = self.hook_pattern(F.softmax(masked, dim=-1))  # rows sum to 1, 0 above diagonal
            z = self.attn_dropout(pattern) @ v  # (B, nh, T, hs)
        else:
            dropout = self.dropout if self.training else 0.0
            if T == T_k:  # no cached keys: the plain lower-triangular mask
                z = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
            elif T == 1:  # one new token (generation): it may look at every key, no mask
                z = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
            else:  # several new queries against cached keys: pass the offset mask explicitly
                mask = self.causal_mask[T_k - T : T_k, :T_k]  # (T, T_k)
                z = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)

        z = self.hook_z(z.transpose(1, 2))  # (B, T, nh, hs)
        return self.c_proj(z.reshape(B, T, C))  # (B, T, C)


class MLP(Module):
    """Position-wise feed-forward: C -> mlp_ratio*C -> C with a GELU (GPT-2's tanh one by default)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        hidden = config.mlp_ratio * config.d_model
        self.c_fc = Linear(config.d_model, hidden, bias=config.bias)
        self.gelu = GELU(approximate=ACTIVATIONS[config.activation])
        self.c_proj = Linear(hidden, config.d_model, bias=config.bias)
        self.dropout = Dropout(config.dropout)
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hook_pre(self.c_fc(x))  # (B, T, 4C)
        h = self.hook_post(self.gelu(h))
        return self.dropout(self.c_proj(h))  # (B, T, C)


class Block(Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(config.d_model, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.resid_dropout = Dropout(config.dropout)
        self.ln_2 = LayerNorm(config.d_model, bias=config.bias)
        self.mlp = MLP(config)
        self.hook_resid_pre, self.hook_attn_out, self.hook_resid_mid = HookPoint(), HookPoint(), HookPoint()
        self.hook_mlp_out, self.hook_resid_post = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor, kv_cache: Optional["KVCache"] = None, layer: int = 0) -> torch.Tensor:
        x = self.hook_resid_pre(x)  # (B, T, C)
        attn_out = self.hook_attn_out(self.resid_dropout(self.attn(self.ln_1(x), kv_cache, layer)))
        x = self.hook_resid_mid(x + attn_out)
        mlp_out = self.hook_mlp_out(self.mlp(self.ln_2(x)))
        return self.hook_resid_post(x + mlp_out)


class KVCache:
    """Keys and values of the positions seen so far, one pair of tensors per layer.

    Pre-allocated to ``max_len`` positions so that each generated token writes one
    slot instead of concatenating (and copying) the whole history. With ``dtype=None``
    a layer's buffers take the dtype of the first keys stored (bf16 under autocast),
    so the cache never converts on every step.
    """

    def __init__(
        self,
        config: GPTConfig,
        batch_size: int,
        max_len: int,
        device: Optional[torch.device | str] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        self.shape = (batch_size, config.n_head, max_len, config.d_head)  # per layer
        self.device, self.dtype = device, dtype
        self.k: list[Optional[torch.Tensor]] = [None] * config.n_layer  # layer -> (B, nh, max_len, hs)
        self.v: list[Optional[torch.Tensor]] = [None] * config.n_layer
        self.length = 0  # positions filled (same for every layer after a full forward)
        self._layer_len = [0] * config.n_layer

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, nh, T, hs) after the cached ones; return all keys and values so far."""
        if self.k[layer] is None:
            device, dtype = self.device or k.device, self.dtype or k.dtype
            self.k[layer] = torch.empty(self.shape, device=device, dtype=dtype)
            self.v[layer] = torch.empty(self.shape, device=device, dtype=dtype)
        start = self._layer_len[layer]
        end = start + k.size(2)
        if end > self.shape[2]:
            raise ValueError(f"KVCache holds {self.shape[2]} positions; {end} requested")
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        self._layer_len[layer] = end
        self.length = end
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]  # (B, nh, end, hs)


class GPT(Module):
    """Token + position embeddings, n_layer Blocks, a final LayerNorm and the LM head."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = Embedding(config.vocab_size, config.d_model)  # token embeddings
        self.wpe = Embedding(config.block_size, config.d_model)  # learned position embeddings
        self.drop = Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_final = HookedLayerNorm(config.d_model, bias=config.bias)
        self.lm_head = Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight
        self.hook_embed, self.hook_pos_embed = HookPoint(), HookPoint()
        self.hook_dict = _hooks.name_hook_points(self)

        # GPT-2 initialisation: N(0, 0.02) everywhere; the projections that write into
        # the residual stream are scaled by 1/sqrt(2 * n_layer) so its variance does not
        # grow with depth (each block adds two of them).
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without position embeddings (as nanoGPT reports)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wpe.weight.numel()
        return n

    def forward(
        self,
        idx: torch.Tensor,
        targets: Optional[torch.Tensor] = None,
        loss_mask: Optional[torch.Tensor] = None,
        kv_cache: Optional[KVCache] = None,
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """idx (B, T) token ids -> (logits (B, T, vocab), loss or None).

        ``targets`` (B, T) are the next tokens; positions with target -1 are ignored.
        ``loss_mask`` (B, T) of 0/1 weights the loss per position (the synthetic tasks
        set it to 0 over the prompt, so only the answer is learned).
        With a ``kv_cache`` the T new tokens continue the cached positions.
        """
        T = idx.size(1)
        start = kv_cache.length if kv_cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(
                f"sequence of {start + T} tokens is longer than model.block_size={self.config.block_size}: "
                f"crop the input to its last {self.config.block_size} tokens"
            )
        lo, hi = torch.aminmax(idx)  # one cheap reduction; an out-of-range id would otherwise
        if lo < 0 or hi >= self.config.vocab_size:  # fail deep inside the embedding lookup
            raise ValueError(
                f"token ids must be in [0, {self.config.vocab_size}) (model.vocab_size); got min {int(lo)}, max {int(hi)}"
            )
        logits = self._logits(idx, kv_cache)  # (B, T, vocab)

        loss = None
        if targets is not None:
            flat_logits, flat_targets = logits.view(-1, logits.size(-1)).float(), targets.reshape(-1)
            if loss_mask is None:
                loss = F.cross_entropy(flat_logits, flat_targets, ignore_index=-1)
            else:
                per_token = F.cross_entropy(flat_logits, flat_targets, ignore_index=-1, reduction="none")
                weights = loss_mask.reshape(-1).to(per_token.dtype)
                loss = (per_token * weights).sum() / weights.sum().clamp(min=1.0)
        return logits, loss

    def _logits(self, idx: torch.Tensor, kv_cache: Optional[KVCache] = None) -> torch.Tensor:
        """forward() without its input checks: idx (B, T) -> logits (B, T, vocab).

        generate() checks the prompt once and then calls this for every new token,
        saving the id-range check (a reduction and two host syncs) per decode step.
        """
        T = idx.size(1)
        start = kv_cache.length if kv_cache is not None else 0
        tok_emb = self.hook_embed(self.wte(idx))  # (B, T, C)
        # positions start ... start+T-1 are consecutive rows: a slice, no index lookup needed
        pos_emb = self.hook_pos_embed(self.wpe.weight[start : start + T][None])  # (1, T, C)
        x = self.drop(tok_emb + pos_emb)
        for i, block in enumerate(self.blocks):
            x = block(x, kv_cache, i)
        return self.lm_head(self.ln_final(x))  # (B, T, vocab)

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        do_sample: bool = True,
        stop_tokens: Optional[Iterable[int]] = None,
        seed: Optional[int] = None,
    ) -> torch.Tensor:
        """Continue each prompt in idx (B, T) by up to max_new_tokens tokens; returns (B, T + n).

        Uses a KV cache: each step feeds only the newest token. Positions are learned
        and absolute, so once the sequence outgrows block_size the window of the last
        block_size tokens is re-encoded from scratch each step -- exactly what a
        full-recompute sampler does, so both give the same tokens for the same seed.
        Generation stops early once every row has produced one of ``stop_tokens``;
        rows that stopped earlier are padded with their stop token.
        Dropout is active if the model is in training mode: call ``model.eval()`` first.
        """
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens={max_new_tokens}: expected >= 0")
        if idx.dim() != 2 or idx.size(1) == 0:
            raise ValueError(f"idx has shape {tuple(idx.shape)}: expected (batch, T) with T >= 1")
        vocab = self.config.vocab_size
        if idx.min() < 0 or idx.max() >= vocab:
            raise ValueError(f"token ids must be in [0, {vocab}); got min {int(idx.min())}, max {int(idx.max())}")
        generator = None
        if seed is not None:
            generator = torch.Generator(device=idx.device).manual_seed(seed)
        stop = torch.tensor(sorted(set(stop_tokens or [])), dtype=torch.long, device=idx.device)
        done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
        B, T, block = idx.size(0), idx.size(1), self.config.block_size
        # one output buffer, filled left to right: no torch.cat (and copy) per token
        out = idx.new_empty((B, T + max_new_tokens))  # (B, T + max_new_tokens)
        out[:, :T] = idx
        n = T  # tokens in out so far
        # inference_mode skips autograd bookkeeping (cheaper than no_grad per token). `out` is
        # created outside it, so the result is an ordinary tensor that callers may train on.
        with torch.inference_mode():
            cache: Optional[KVCache] = None
            for _ in range(max_new_tokens):
                # ids were checked above and the window never exceeds block_size, so
                # skip forward()'s per-call checks
                if cache is not None and n <= block:
                    logits = self._logits(out[:, n - 1 : n], cache)  # one new position
                else:  # first step, or the window slid: encode the last block_size tokens
                    window = out[:, max(0, n - block) : n]
                    cache = KVCache(self.config, B, block)
                    logits = self._logits(window, cache)
                next_id = self.sample_next(logits[:, -1, :], temperature, top_k, top_p, do_sample, generator)  # (B, 1)
                if stop.numel():  # rows already done repeat their stop token
                    next_id = torch.where(done[:, None], out[:, n - 1 : n], next_id)
                    done |= torch.isin(next_id[:, 0], stop)
                out[:, n : n + 1] = next_id
                n += 1
                if stop.numel() and bool(done.all()):
                    break
        return out[:, :n]

    @staticmethod
    def sample_next(
        logits: torch.Tensor,
        temperature: float = 1.0,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        do_sample: bool = True,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """logits (B, vocab) of the last position -> next ids (B, 1)."""
        logits = logits.float()
        if not do_sample:
            return logits.argmax(dim=-1, keepdim=True)
        if temperature <= 0:
            raise ValueError(f"temperature={temperature}: expected > 0 (use do_sample=False for greedy)")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k={top_k}: expected >= 1 (or None for no limit)")
        if top_p is not None and not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p={top_p}: expected a number in (0, 1] (or None)")
        logits = logits / temperature
        if top_k is not None:
            kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = F.softmax(logits, dim=-1)
        if top_p is not None and top_p < 1.0:
            # nucleus: keep the smallest set of most likely tokens whose mass reaches top_p
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            outside = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p
            sorted_probs = sorted_probs.masked_fill(outside, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        return torch.multinomial(probs, num_samples=1, generator=generator)

    # -- Hugging Face GPT-2 interop (see gptdecoder/hf.py) -------------------------------

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "GPT":
        """Load a local Hugging Face GPT-2 checkpoint directory (no network)."""
        from gptdecoder import hf  # hf imports this module, so import it lazily

        return hf.from_pretrained(directory)

    def save_pretrained(self, directory: str | os.PathLike, eos_token_id: Optional[int] = None) -> Path:
        """Write a directory that ``transformers.AutoModelForCausalLM.from_pretrained`` loads."""
        from gptdecoder import hf

        return hf.save_pretrained(self, directory, eos_token_id=eos_token_id)

    # -- the attention lab's entry points (see gptdecoder/hooks.py) --------------------

    def run_with_cache(self, idx: torch.Tensor, names_filter: _hooks.NamesFilter = None, **kwargs):
        """(logits, cache): activations at the hook points chosen by names_filter, detached."""
        (logits, _), cache = _hooks.run_with_cache(self, idx, names_filter=names_filter, **kwargs)
        return logits, cache

    def run_with_hooks(self, idx: torch.Tensor, fwd_hooks=(), **kwargs):
        """One forward pass with ``fwd_hooks=[(name, fn)]`` attached (TransformerLens's call).

        Returns what ``model(idx, **kwargs)`` returns, (logits, loss); the hooks are
        removed afterwards, also when the pass raises.
        """
        with self.hooks(fwd_hooks):
            return self(idx, **kwargs)

    def hooks(self, fwd_hooks):
        """``with model.hooks(fwd_hooks=[(name, fn)]):`` -- hooks removed on exit, always."""
        return _hooks.hooks(self.hook_dict, fwd_hooks)
