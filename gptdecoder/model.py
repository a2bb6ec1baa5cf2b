"""GPT-2, written to be read.

One concept per class: CausalSelfAttention, MLP, Block, KVCache, GPT, all plain
torch.nn; the pieces they are built from sit beside this file: the norms (norms.py), the
position encodings (positions.py), and sampling the next token (sampling.py). Tensor shapes are in the comments (B = batch, T = positions, C = d_model,
nh = heads, hs = head size). Every interesting tensor passes through a named
HookPoint (the table of names and shapes is in gptdecoder/hooks.py): that is how
the attention lab reads and edits the model without changing its code.

The configuration is checked for the user in gptdecoder/config.py; here it is only
asserted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from gptdecoder.hooks import HookFn, HookPoint, NamesFilter, attach_hooks, name_hook_points, run_with_cache
from gptdecoder.norms import RMSNorm, make_norm
from gptdecoder.positions import Rotary, Sinusoids, alibi_slopes, check_position_ids, sorted_random_positions
from gptdecoder.sampling import sample_next

# The MLP's non-linearity, by config name. GPT-2 uses the tanh approximation of GELU;
# nanoGPT the exact one; relu2 (ReLU squared, from the Primer paper and modded-nanogpt)
# is cheaper and trains faster on small models.
ACTIVATIONS = {
    "gelu_tanh": lambda h: F.gelu(h, approximate="tanh"),
    "gelu": F.gelu,
    "relu2": lambda h: F.relu(h).square(),
    "relu": F.relu,  # the original Transformer's; compiled (Tracr) programs use it
}
# How a token's position reaches attention (Block and CausalSelfAttention read it; the pieces
# are in gptdecoder/positions.py):
#   learned  GPT-2: a trained vector per position, added to the token embedding
#   sinusoidal  the original Transformer's: a fixed vector of sines and cosines per position, added
#   rope     rotary: q and k are rotated by an angle proportional to the position
#   alibi    no embedding; each head's scores get -slope * |query pos - key pos|
#   nope     nothing: the causal mask alone tells positions apart
# What attention reads: the normalised residual stream (B, T, C), or one copy per head for
# its queries, keys and values, (B, T, nh, C) each (see CausalSelfAttention.project_qkv).
AttentionInput = Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
POS_ENCODINGS = ("learned", "sinusoidal", "rope", "alibi", "nope")
ADDED_POSITIONS = ("learned", "sinusoidal")  # the encodings that add a vector to each token's embedding


@dataclass
class GPTConfig:
    """The network's shape. The defaults are GPT-2 small (124M) except the two sizes that
    come from the data: a config file leaves them out and gptdecoder.config fills them in
    from the task or the tokenizer. By hand, GPT-2 small is
    ``GPTConfig(vocab_size=50257, block_size=1024)``."""

    vocab_size: Optional[int] = None  # token ids 0 .. vocab_size-1 (GPT-2: 50257)
    block_size: Optional[int] = None  # longest sequence the model can see (GPT-2: 1024)
    n_layer: int = 12
    n_head: int = 12
    d_model: int = 768
    mlp_ratio: int = 4  # MLP hidden size = mlp_ratio * d_model (unless mlp_hidden says otherwise)
    head_size: Optional[int] = None  # each head's query/key/value size; None: d_model // n_head, as GPT-2
    mlp_hidden: Optional[int] = None  # the MLP's hidden size; None: mlp_ratio * d_model
    norm: str = "layernorm"  # one of NORMS: layernorm (GPT-2) | none
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm, as GPT-2
    tie_weights: bool = True  # the LM head shares the token embedding matrix, as GPT-2
    activation: str = "gelu_tanh"  # a key of ACTIVATIONS: gelu_tanh (GPT-2) | gelu | relu2
    pos_encoding: str = "learned"  # one of POS_ENCODINGS: learned (GPT-2) | sinusoidal | rope | alibi | nope
    # 0: positions are 0..T-1. R > 0: each sequence's positions are T distinct ids drawn
    # from 0..R-1 and sorted (randomized positions, Ruoss et al. 2023), so positions beyond
    # the training length have been seen. Training draws them in forward; generate draws
    # one set per sequence the same way (evaluation as trained); a plain forward outside
    # training uses 0..T-1 unless given position_ids.
    random_positions: int = 0
    rope_base: float = 10000.0  # rope: the wavelengths run from 2*pi to about 2*pi*rope_base
    qk_norm: bool = False  # RMS-normalise each head's q and k before the dot product
    zero_init_proj: bool = False  # output projections (attn and MLP c_proj) start at 0
    logit_softcap: Optional[float] = None  # logits -> cap * tanh(logits / cap); None: off

    def differences_from_gpt2(self) -> list[str]:
        """The settings that make this network something other than GPT-2 (which Hugging
        Face's GPT2LMHeadModel could not hold), as ``key=value``; [] for GPT-2 itself.
        (zero_init_proj and random_positions change only how it is trained.)"""
        gpt2 = GPTConfig()
        keys = ("pos_encoding", "qk_norm", "logit_softcap", "norm")
        found = [f"{k}={getattr(self, k)}" for k in keys if getattr(self, k) != getattr(gpt2, k)]
        if self.n_head * self.d_head != self.d_model:
            found.append(f"head_size={self.head_size}")
        if self.activation not in ("gelu_tanh", "gelu"):
            found.append(f"activation={self.activation}")
        return found

    @property
    def n_positions(self) -> int:
        """How many position ids the model knows: block_size, or the random_positions range."""
        return max(self.block_size or 0, self.random_positions)

    @property
    def d_head(self) -> int:
        """Each head's query/key/value size: head_size, or d_model split evenly over the heads."""
        return self.head_size or self.d_model // self.n_head

    @property
    def d_mlp(self) -> int:
        """The MLP's hidden size: mlp_hidden, or mlp_ratio * d_model."""
        return self.mlp_hidden or self.mlp_ratio * self.d_model


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t sees only positions <= t.

    Two paths compute the same thing: the fused F.scaled_dot_product_attention, and an
    explicit one that materialises scores, masked scores and the pattern so that hooks
    can see (or edit) them. ``explicit_path`` is the one place that chooses.

    Positions enter here for three of the encodings (see POS_ENCODINGS): rope rotates q
    and k, alibi adds a distance penalty to the scores, and learned/nope do nothing.
    With ``qk_norm`` each head's q and k are RMS-normalised (with a learned gain) first,
    which keeps the scores from growing large early in training.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head, self.d_head, self.dropout = config.n_head, config.d_head, config.dropout
        self.pos_encoding, self.qk_norm = config.pos_encoding, config.qk_norm
        self.explicit = False  # set True to always take the explicit path
        inner = config.n_head * config.d_head  # d_model, unless head_size says otherwise
        self.c_attn = nn.Linear(config.d_model, 3 * inner, bias=config.bias)  # q, k, v at once
        self.c_proj = nn.Linear(inner, config.d_model, bias=config.bias)
        # mask[i, j] is True where query i may look at key j (j <= i)
        mask = torch.tril(torch.ones(config.block_size, config.block_size, dtype=torch.bool))
        self.register_buffer("causal_mask", mask, persistent=False)
        if config.qk_norm:
            self.q_norm, self.k_norm = RMSNorm(config.d_head), RMSNorm(config.d_head)
        if config.pos_encoding == "rope":
            self.rotary = Rotary(config.d_head, config.n_positions, config.rope_base)
            self.hook_rot_q, self.hook_rot_k = HookPoint(), HookPoint()
        if config.pos_encoding == "alibi":
            self.register_buffer("alibi_slopes", alibi_slopes(config.n_head), persistent=False)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        # hook_attn_scores: the scores after the mask (TransformerLens's name; alias hook_masked_scores)
        self.hook_scores, self.hook_attn_scores, self.hook_pattern = HookPoint(), HookPoint(), HookPoint()
        self.hook_z = HookPoint()
        self.hook_result = HookPoint()  # each head's output, computed apart after GPT.set_use_attn_result(True)
        self.use_attn_result = False

    def explicit_path(self, x: torch.Tensor) -> bool:
        """Materialise the attention matrices when a hook watches them (or ``explicit`` is
        set), and when training on CPU under bf16 autocast: there the fused kernel's bf16
        backward is slower than plain batched matmuls at the sizes this project trains."""
        if self.explicit or any(p.is_watched() for p in (self.hook_scores, self.hook_attn_scores, self.hook_pattern)):
            return True
        return (torch.is_grad_enabled() and x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
                and torch.get_autocast_dtype("cpu") == torch.bfloat16)

    def forward(self, x: AttentionInput, pos: torch.Tensor, kv_cache: Optional[KVCache] = None,
                layer: int = 0) -> torch.Tensor:
        """x (B, T, C) at positions pos: (T,), or (B, T) when each row has its own (randomized
        positions); with a kv_cache the T new tokens follow the cached ones. x may also be
        split per head (see ``project_qkv``)."""
        q, k, v = self.project_qkv(x)  # each (B, T, nh, hs)
        B, T = q.shape[:2]
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, nh, T, hs)
        if self.pos_encoding == "rope":  # rotate before caching: a cached key keeps its position
            q = self.hook_rot_q(self.rotary(q, pos).transpose(1, 2)).transpose(1, 2)
            k = self.hook_rot_k(self.rotary(k, pos).transpose(1, 2)).transpose(1, 2)
        if kv_cache is not None:
            k, v = kv_cache.append(layer, k, v)  # (B, nh, T_k, hs): every key so far
        T_k = k.size(2)
        # the T new queries sit at positions T_k - T ... T_k - 1
        mask = self.causal_mask[T_k - T : T_k, :T_k]  # (T, T_k): True where query may see key
        if self.pos_encoding == "alibi":  # keys: the cached tokens' positions, or the queries' own
            key_pos = kv_cache.key_positions() if kv_cache is not None else pos  # (T_k,) or (B, T_k)
            bias = self.alibi_bias(pos, key_pos)  # (1 or B, nh, T, T_k)
        else:
            bias = None

        if self.explicit_path(q):
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.d_head)  # (B, nh, T, T_k)
            scores = self.hook_scores(scores if bias is None else scores + bias)
            masked = self.hook_attn_scores(scores.masked_fill(~mask, float("-inf")))
            pattern = self.hook_pattern(F.softmax(masked, dim=-1))  # rows sum to 1, 0 above the diagonal
            z = F.dropout(pattern, self.dropout, self.training) @ v  # (B, nh, T, hs)
        else:
            dropout = self.dropout if self.training else 0.0
            if bias is not None:  # alibi: the distance penalty, -inf where the mask forbids
                z = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.masked_fill(~mask, float("-inf")).to(q.dtype),
                                                   dropout_p=dropout)
            elif T == T_k:  # no cached keys: the plain lower-triangular mask
                z = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
            elif T == 1:  # one new token (generation) may look at every key: no mask to apply
                z = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
            else:  # several new queries after cached keys: the offset mask
                z = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)

        z = self.hook_z(z.transpose(1, 2))  # (B, T, nh, hs)
        if self.use_attn_result:  # each head's own output, then their sum (the same as c_proj)
            W_O = self.c_proj.weight.view(-1, self.n_head, self.d_head)  # (C, nh, hs): head h writes W_O[:, h]
            result = self.hook_result(torch.einsum("btnh,cnh->btnc", z, W_O))  # (B, T, nh, C)
            out = result.sum(dim=2) if self.c_proj.bias is None else result.sum(dim=2) + self.c_proj.bias
        else:
            out = self.c_proj(z.reshape(B, T, -1))  # (B, T, C)
        return F.dropout(out, self.dropout, self.training)

    def project_qkv(self, x: AttentionInput) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values, each (B, T, nh, hs).

        x is normally the block's normalised residual stream (B, T, C), which every head
        reads: c_attn computes all three at once. For the circuit finder x can instead be
        three tensors (x_q, x_k, x_v), each (B, T, nh, C): head h's queries are computed from
        x_q[:, :, h], its keys from x_k[:, :, h] and its values from x_v[:, :, h]
        (TransformerLens's split q/k/v inputs), so one head's query input can be changed
        without touching its keys or another head. Same weights, same numbers when the
        copies are equal.
        """
        if isinstance(x, torch.Tensor):
            B, T, C = x.shape
            # c_attn's output (B, T, 3C) is q, k, v side by side, each nh heads of hs numbers
            q, k, v = self.c_attn(x).view(B, T, 3, self.n_head, self.d_head).unbind(2)
            return q, k, v
        C = self.c_attn.in_features
        W = self.c_attn.weight.view(3, self.n_head, self.d_head, C)  # c_attn's rows: q, k, v; nh heads of hs each
        bias = self.c_attn.bias.view(3, self.n_head, self.d_head) if self.c_attn.bias is not None else None
        q, k, v = (torch.einsum("btnc,nhc->btnh", x_i, W[i]) + (0 if bias is None else bias[i])
                   for i, x_i in enumerate(x))
        return q, k, v

    def alibi_bias(self, pos: torch.Tensor, key_pos: torch.Tensor) -> torch.Tensor:
        """-slope_h * |query position - key position|: (1 or B, nh, T, T_k), for queries at
        pos (T,) or (B, T) and keys at key_pos (T_k,) or (B, T_k). A causal model's keys are
        never after its query, but position ids given by a task may be (coupling): the
        distance is still a distance, so a key is never favoured for being far ahead."""
        distance = (pos[..., :, None] - key_pos[..., None, :]).abs().float()  # (T, T_k) or (B, T, T_k)
        if distance.dim() == 2:
            distance = distance[None]  # (1, T, T_k)
        return -self.alibi_slopes[None, :, None, None] * distance[:, None]  # (1 or B, nh, T, T_k)


class MLP(nn.Module):
    """Position-wise feed-forward: C -> d_mlp -> C with a non-linearity in between
    (GELU, as GPT-2, unless config.activation says otherwise; d_mlp = mlp_ratio * C unless
    config.mlp_hidden says otherwise)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        hidden = config.d_mlp
        self.c_fc = nn.Linear(config.d_model, hidden, bias=config.bias)
        self.c_proj = nn.Linear(hidden, config.d_model, bias=config.bias)
        self.activation, self.dropout = ACTIVATIONS[config.activation], config.dropout
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hook_pre(self.c_fc(x))  # (B, T, d_mlp)
        h = self.hook_post(self.activation(h))
        return F.dropout(self.c_proj(h), self.dropout, self.training)  # (B, T, C)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = make_norm(config.norm, config.d_model, config.bias)  # hook points blocks.{i}.ln1.* (layernorm)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config.norm, config.d_model, config.bias)  # hook points blocks.{i}.ln2.* (layernorm)
        self.mlp = MLP(config)
        self.n_head = config.n_head
        self.hook_resid_pre, self.hook_attn_out, self.hook_resid_mid = HookPoint(), HookPoint(), HookPoint()
        self.hook_mlp_in, self.hook_mlp_out, self.hook_resid_post = HookPoint(), HookPoint(), HookPoint()
        # one copy of the residual stream per head for its queries, keys and values
        # (used only after GPT.set_use_split_qkv_input(True), as in TransformerLens)
        self.hook_q_input, self.hook_k_input, self.hook_v_input = HookPoint(), HookPoint(), HookPoint()
        self.split_qkv_input = False

    def forward(self, x: torch.Tensor, pos: torch.Tensor, kv_cache: Optional[KVCache] = None,
                layer: int = 0) -> torch.Tensor:
        x = self.hook_resid_pre(x)  # (B, T, C)
        if self.split_qkv_input:  # three copies per head, normalised separately: (B, T, nh, C) each
            per_head = x[:, :, None, :].expand(-1, -1, self.n_head, -1)
            attn_in = tuple(self.ln_1(hook(per_head)) for hook in (self.hook_q_input, self.hook_k_input, self.hook_v_input))
        else:
            attn_in = self.ln_1(x)  # (B, T, C)
        attn_out = self.hook_attn_out(self.attn(attn_in, pos, kv_cache, layer))
        x = self.hook_resid_mid(x + attn_out)
        mlp_out = self.hook_mlp_out(self.mlp(self.ln_2(self.hook_mlp_in(x))))
        return self.hook_resid_post(x + mlp_out)


class KVCache:
    """Keys and values of the positions seen so far, one pair of tensors per layer.

    Allocated once for ``max_len`` positions, so each generated token writes one slot
    instead of copying the whole history. The buffers take the dtype of the first keys
    stored (bf16 under autocast), so nothing is converted at every step.
    """

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int) -> None:
        self.shape = (batch_size, config.n_head, max_len, config.d_head)  # per layer
        self.k: list[Optional[torch.Tensor]] = [None] * config.n_layer  # layer -> (B, nh, max_len, hs)
        self.v: list[Optional[torch.Tensor]] = [None] * config.n_layer
        self.lengths = [0] * config.n_layer  # positions filled, per layer
        self.positions: Optional[torch.Tensor] = None  # (B, max_len): the position id of each cached token
        self.n_positions = 0  # entries of self.positions filled

    @property
    def length(self) -> int:
        """Positions cached (by the last layer: all layers agree after a full forward)."""
        return self.lengths[-1]

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, nh, T, hs) after the cached ones; return every key and value so far."""
        if self.k[layer] is None:
            self.k[layer] = k.new_empty(self.shape)
            self.v[layer] = v.new_empty(self.shape)
        start, end = self.lengths[layer], self.lengths[layer] + k.size(2)
        assert end <= self.shape[2], f"KVCache holds {self.shape[2]} positions; {end} requested"
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        self.lengths[layer] = end
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]  # (B, nh, end, hs)

    def append_positions(self, pos: torch.Tensor) -> None:
        """Remember the position ids (T,) or (B, T) of the T tokens about to be cached: a
        key keeps the position it was encoded at (ALiBi's distances read them back).
        Written into one buffer, like the keys: no copy of the history per token."""
        if self.positions is None:
            self.positions = torch.empty(self.shape[0], self.shape[2], dtype=torch.long, device=pos.device)
        start, end = self.n_positions, self.n_positions + pos.size(-1)
        self.positions[:, start:end] = pos  # (T,) broadcasts over the batch
        self.n_positions = end

    def key_positions(self) -> torch.Tensor:
        """(B, T_k): the position id of every cached token."""
        assert self.positions is not None, "append_positions comes before the blocks read the cache"
        return self.positions[:, : self.n_positions]


class GPT(nn.Module):
    """Token (+ position) embeddings, n_layer Blocks, a final LayerNorm and the LM head.

    GPT-2 adds a learned position embedding to each token's; the other position
    encodings (config.pos_encoding) act inside attention instead, so the model then has
    no ``wpe`` and no ``hook_pos_embed``.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        assert config.vocab_size and config.block_size, "vocab_size and block_size must be set"
        assert config.head_size or config.d_model % config.n_head == 0, "d_model must be a multiple of n_head"
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.d_model)  # token embeddings
        if config.pos_encoding == "learned":
            self.wpe = nn.Embedding(config.n_positions, config.d_model)  # learned position embeddings
        if config.pos_encoding == "sinusoidal":
            self.wpe = Sinusoids(config.n_positions, config.d_model)  # fixed position vectors
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_final = make_norm(config.norm, config.d_model, config.bias)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight
        self.hook_embed = HookPoint()
        if config.pos_encoding in ADDED_POSITIONS:
            self.hook_pos_embed = HookPoint()
        self.hook_dict = name_hook_points(self)  # {"blocks.0.attn.hook_pattern": HookPoint, ...}

        # GPT-2 initialisation: N(0, 0.02) everywhere; the projections that write into
        # the residual stream are scaled by 1/sqrt(2 * n_layer) so that its variance does
        # not grow with depth (each block adds two of them).
        self.apply(self._init_weights)
        # zero_init_proj starts them at 0 instead (modded-nanogpt): every block begins as
        # the identity, and the residual stream carries the embeddings unchanged at first.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                if config.zero_init_proj:
                    nn.init.zeros_(p)
                else:
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without the position embeddings (as nanoGPT reports)."""
        n = sum(p.numel() for p in self.parameters())
        learned = self.config.pos_encoding == "learned"
        return n - self.wpe.weight.numel() if non_embedding and learned else n

    def forward(
        self,
        idx: torch.Tensor,
        targets: Optional[torch.Tensor] = None,
        loss_mask: Optional[torch.Tensor] = None,
        kv_cache: Optional[KVCache] = None,
        position_ids: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """idx (B, T) token ids -> (logits (B, T, vocab), loss or None).

        ``targets`` (B, T) are the next tokens; positions with target -1 are ignored.
        ``loss_mask`` (B, T) of 0/1 weights the loss per position (the synthetic tasks
        set it to 0 over the prompt, so only the answer is learned).
        With a ``kv_cache`` the T new tokens continue the cached positions.
        ``position_ids`` (B, T) or (T,), as Hugging Face's: the position id each token is
        encoded at, in place of the default (see ``positions``). A task may give tokens ids
        that repeat or jump (position coupling); each must be in [0, config.n_positions).
        """
        check_token_ids(idx, self.config.vocab_size)  # a bad id would fail deep inside the embedding
        B, T = idx.shape
        start = kv_cache.length if kv_cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} tokens is longer than model.block_size="
                             f"{self.config.block_size}: crop the input to its last {self.config.block_size} tokens")
        if position_ids is None:
            pos = self.positions(B, T, start, idx.device)  # (T,), or (B, T) for randomized positions
        else:
            pos = check_position_ids(position_ids, B, T, self.config.n_positions).to(idx.device)
        if kv_cache is not None:
            kv_cache.append_positions(pos)
        x = self.hook_embed(self.wte(idx))  # (B, T, C)
        if self.config.pos_encoding in ADDED_POSITIONS:  # a table of position vectors, added to the tokens
            if position_ids is None and pos.dim() == 1:  # a view of the table's rows, shared by the batch
                rows = self.wpe.weight[start : start + T]  # (T, C)
            else:
                rows = self.wpe(pos)  # (T, C) or (B, T, C)
            x = x + self.hook_pos_embed(rows.expand(B, T, -1))  # (B, T, C)
        x = F.dropout(x, self.config.dropout, self.training)
        for i, block in enumerate(self.blocks):
            x = block(x, pos, kv_cache, i)
        logits = self.lm_head(self.ln_final(x))  # (B, T, vocab)
        if self.config.logit_softcap is not None:  # squash smoothly into (-cap, cap)
            cap = self.config.logit_softcap
            logits = cap * torch.tanh(logits / cap)

        loss = None
        if targets is not None:
            flat_logits, flat_targets = logits.flatten(0, 1).float(), targets.flatten()  # (B*T, vocab), (B*T,)
            if loss_mask is None:
                loss = F.cross_entropy(flat_logits, flat_targets, ignore_index=-1)
            else:
                per_token = F.cross_entropy(flat_logits, flat_targets, ignore_index=-1, reduction="none")
                weights = loss_mask.flatten().to(per_token.dtype)
                loss = (per_token * weights).sum() / weights.sum().clamp(min=1.0)
        return logits, loss

    def positions(self, B: int, T: int, start: int, device: torch.device) -> torch.Tensor:
        """The position ids of T new tokens after ``start`` cached ones: start .. start+T-1
        as (T,). While training with ``random_positions`` R, each row instead gets T
        distinct ids drawn from 0 .. R-1, in increasing order, as (B, T)."""
        R = self.config.random_positions
        if self.training and R and start == 0:
            return sorted_random_positions(B, T, R, device)  # (B, T)
        return torch.arange(start, start + T, device=device)  # (T,)

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
        position_ids: Optional[torch.Tensor] = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Continue each prompt in idx (B, T) by up to max_new_tokens tokens; returns (B, T + n).

        ``position_ids`` (B, >= T + max_new_tokens - 1): the position of every token the
        model will read, prompt and generated (the last generated token is never read).
        Without them, positions are 0, 1, ...; except that a model trained with randomized
        positions draws one sorted set per sequence from its range (as in training, from
        ``seed``'s generator), kept for every step.

        With a KV cache each step feeds only the newest token. Positions are absolute,
        so once the sequence outgrows block_size the window of the last block_size
        tokens is encoded afresh at each step -- what a full-recompute sampler does, so
        both give the same tokens for the same seed. ``use_cache=False`` (Hugging Face's
        name) re-encodes the whole window at every step instead: slower, but a hook then
        sees every position at every step (per-position mean ablation needs that).
        Generation stops early once every row has produced one of ``stop_tokens``; rows
        that stopped earlier repeat their stop token. Call ``model.eval()`` first, or dropout stays on. Runs under
        torch.inference_mode (no autograd bookkeeping per op); the result is an ordinary tensor.
        """
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens={max_new_tokens}: expected >= 0")
        generator = torch.Generator(idx.device).manual_seed(seed) if seed is not None else None
        stop = torch.tensor(sorted(set(stop_tokens or [])), dtype=torch.long, device=idx.device)
        done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
        position_ids = self.generation_positions(idx, max_new_tokens, position_ids, generator)
        cache: Optional[KVCache] = None
        with torch.inference_mode():
            for _ in range(max_new_tokens):
                logits, cache = self.next_token_logits(idx, cache if use_cache else None, position_ids)  # (B, vocab)
                next_id = sample_next(logits, temperature, top_k, top_p, do_sample, generator)  # (B, 1)
                if stop.numel():
                    next_id = torch.where(done[:, None], idx[:, -1:], next_id)  # finished rows repeat their stop
                    done |= torch.isin(next_id[:, 0], stop)
                idx = torch.cat((idx, next_id), dim=1)
                if stop.numel() and bool(done.all()):
                    break
        return idx.clone()  # outside inference mode: a tensor autograd may use later

    def generation_positions(self, idx: torch.Tensor, max_new_tokens: int, position_ids: Optional[torch.Tensor],
                             generator: Optional[torch.Generator]) -> Optional[torch.Tensor]:
        """The position ids generate feeds (B, T + max_new_tokens - 1), or None for 0, 1, ...

        Given ids must cover every token the model will read. A model trained with
        randomized positions, given none, draws them as training did, once per sequence;
        when more tokens are asked for than its range holds, it falls back to 0, 1, ...
        """
        B, T = idx.shape
        needed = T + max_new_tokens - 1
        if position_ids is not None:
            position_ids = position_ids.expand(B, -1) if position_ids.dim() == 1 else position_ids
            if position_ids.size(0) != B or position_ids.size(1) < needed:
                raise ValueError(f"position_ids has shape {tuple(position_ids.shape)}: expected ({B}, >= {needed}), "
                                 f"a position for each prompt token and each generated token but the last")
            return position_ids.to(idx.device)
        R = self.config.random_positions
        if R and needed <= min(R, self.config.block_size):
            return sorted_random_positions(B, needed, R, idx.device, generator)
        return None

    def next_token_logits(self, idx: torch.Tensor, cache: Optional[KVCache],
                          position_ids: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, KVCache]:
        """Logits (B, vocab) of the token after idx (B, n), and the cache to pass next time.

        A cache that holds all of idx but its newest token is fed only that token. The
        first time, or once the sequence has outgrown block_size (the window slid, and
        absolute positions make the cached keys wrong), the last block_size tokens are
        encoded into a fresh cache. ``position_ids`` (B, >= n) give the position of each
        token of idx (None: 0, 1, ... within the window).
        """
        block, n = self.config.block_size, idx.size(1)
        pos = None if position_ids is None else position_ids[:, :n]  # (B, n)
        if cache is None or cache.length >= block:
            cache = KVCache(self.config, idx.size(0), block)
            logits, _ = self(idx[:, -block:], kv_cache=cache, position_ids=None if pos is None else pos[:, -block:])
        else:
            logits, _ = self(idx[:, -1:], kv_cache=cache, position_ids=None if pos is None else pos[:, -1:])
        return logits[:, -1, :], cache

    # -- the attention lab's entry points (TransformerLens's names; see gptdecoder/hooks.py) --

    def hooks(self, fwd_hooks: Iterable[tuple[str, HookFn]]):
        """``with model.hooks(fwd_hooks=[(name, fn)]):`` -- the hooks are removed on exit, always."""
        return attach_hooks(self.hook_dict, fwd_hooks)

    def run_with_hooks(self, idx: torch.Tensor, fwd_hooks=(), **kwargs) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``model(idx, **kwargs)`` with ``fwd_hooks=[(name, fn)]`` attached for this one call."""
        with self.hooks(fwd_hooks):
            return self(idx, **kwargs)

    def run_with_cache(self, idx: torch.Tensor, names_filter: NamesFilter = None, **kwargs):
        """(logits, cache): the activations at the hook points ``names_filter`` selects, detached."""
        (logits, _), cache = run_with_cache(self, idx, names_filter=names_filter, **kwargs)
        return logits, cache

    def set_use_split_qkv_input(self, use: bool = True) -> None:
        """TransformerLens's switch: every head reads its own copy of the residual stream for
        its queries, keys and values (``blocks.{i}.hook_q_input`` / ``k_input`` / ``v_input``,
        (B, T, nh, C)), so that one head's input can be patched alone. Same outputs, more work."""
        for block in self.blocks:
            block.split_qkv_input = use

    def set_use_attn_result(self, use: bool = True) -> None:
        """TransformerLens's switch: compute each head's output apart (``blocks.{i}.attn.hook_result``,
        (B, T, nh, C)) before summing them. Same outputs, more memory."""
        for block in self.blocks:
            block.attn.use_attn_result = use


def check_token_ids(idx: torch.Tensor, vocab_size: int) -> None:
    """ValueError unless idx is (B, T) with T >= 1 and every id in [0, vocab_size)."""
    if idx.dim() != 2 or idx.size(1) == 0:
        raise ValueError(f"idx has shape {tuple(idx.shape)}: expected (batch, T) with T >= 1")
    lo, hi = torch.stack(torch.aminmax(idx)).tolist()  # one reduction, one read back
    if lo < 0 or hi >= vocab_size:
        raise ValueError(f"token ids must be in [0, {vocab_size}) (model.vocab_size); got min {lo}, max {hi}")

