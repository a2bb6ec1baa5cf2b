"""How a token's position reaches the model: the pieces behind GPTConfig.pos_encoding and
position ids (the table of encodings, POS_ENCODINGS, is in gptdecoder/model.py).

* ``Rotary`` -- RoPE: q and k rotated by an angle proportional to the position.
* ``Sinusoids`` -- the original Transformer's fixed position vectors.
* ``alibi_slopes`` -- ALiBi's per-head distance penalties.
* ``sorted_random_positions`` -- randomized positions (Ruoss et al. 2023), drawn in training
  and, the same way, at evaluation and generation.
* ``check_position_ids`` -- ids given from outside (a task's coupled ids, a caller's).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn


class Rotary(nn.Module):
    """Rotary position embedding (RoPE, Su et al. 2021), applied to q and k.

    Each head's hs features are hs/2 pairs (feature i with feature i + hs/2); the pair
    is rotated by the angle position * freq_i, with frequencies falling geometrically
    from 1 to 1/base. The dot product of a rotated query and key then depends on their
    positions only through the difference, so attention sees relative positions.
    """

    def __init__(self, d_head: int, n_positions: int, base: float) -> None:
        super().__init__()
        freqs = base ** (-torch.arange(0, d_head, 2, dtype=torch.float) / d_head)  # (hs/2,)
        angles = torch.outer(torch.arange(n_positions, dtype=torch.float), freqs)  # (P, hs/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x (B, nh, T, hs) at positions pos (T,) or (B, T) -> x rotated, same shape."""
        cos, sin = self.cos[pos].to(x.dtype), self.sin[pos].to(x.dtype)  # (T, hs/2) or (B, T, hs/2)
        if pos.dim() == 2:
            cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, hs/2): the same for every head
        x1, x2 = x.chunk(2, dim=-1)  # (B, nh, T, hs/2) each
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class Sinusoids(nn.Module):
    """Fixed position vectors (Vaswani et al. 2017): features 2i and 2i+1 of position p are
    sin and cos of p * 10000^(-2i/d), so moving one position on is the same rotation of
    every pair at every p, and the dot product of two rows depends only on their distance.
    Nothing is trained: a position never seen in training has a vector of the same
    family. Scaled to the size the token embeddings start at (std 0.02), so neither
    drowns the other. Reads like nn.Embedding: ``weight`` (P, C) and ``forward(pos)``."""

    def __init__(self, n_positions: int, d_model: int) -> None:
        super().__init__()
        freqs = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float) / d_model)  # (C/2,)
        angles = torch.outer(torch.arange(n_positions, dtype=torch.float), freqs)  # (P, C/2)
        table = torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(1)  # (P, C): sin, cos, sin, ...
        self.register_buffer("weight", table * 0.02 * math.sqrt(2), persistent=False)

    def forward(self, pos: torch.Tensor) -> torch.Tensor:
        return self.weight[pos]  # (..., C)


def alibi_slopes(n_head: int) -> torch.Tensor:
    """ALiBi's per-head slopes (Press et al. 2022): a geometric sequence starting at
    2^(-8/n) for n heads. For a head count that is not a power of two, the slopes of the
    nearest smaller power of two, then every other slope of the next power up."""
    def geometric(n: int) -> list[float]:
        return [2 ** (-8 * (h + 1) / n) for h in range(n)]
    power = 2 ** math.floor(math.log2(n_head))
    slopes = geometric(power) + geometric(2 * power)[0::2][: n_head - power]
    return torch.tensor(slopes)  # (nh,)


def sorted_random_positions(B: int, T: int, R: int, device: torch.device = torch.device("cpu"),
                            generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """(B, T): for each row, T distinct ids drawn uniformly from 0 .. R-1, in increasing
    order -- the positions of randomized positional encodings, in training and at test."""
    if T > R:
        raise ValueError(f"{T} positions cannot be drawn from model.random_positions={R}: expected at most {R}")
    scores = torch.rand(B, R, device=device, generator=generator)  # a random permutation per row
    return scores.argsort(dim=-1)[:, :T].sort(dim=-1).values  # (B, T)


def check_position_ids(position_ids: torch.Tensor, B: int, T: int, n_positions: int) -> torch.Tensor:
    """position_ids as (T,) or (B, T) integers, each in [0, n_positions); ValueError otherwise."""
    if position_ids.dtype not in (torch.int64, torch.int32) or position_ids.shape not in ((T,), (B, T)):
        raise ValueError(f"position_ids of shape {tuple(position_ids.shape)} and dtype {position_ids.dtype}: "
                         f"expected integers of shape ({B}, {T}) or ({T},), like the tokens")
    lo, hi = torch.stack(torch.aminmax(position_ids)).tolist()
    if lo < 0 or hi >= n_positions:
        raise ValueError(f"position ids must be in [0, {n_positions}) (the model's positions: model.block_size, "
                         f"or model.random_positions when larger); got min {lo}, max {hi}")
    return position_ids.long()
