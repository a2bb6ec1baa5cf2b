"""Models with hand-built weights whose circuit is known: the ground truth for the circuit finder.

The residual stream is cut into named blocks of one-hot slots (Layout): the token, the
position, and one block per thing a head writes (e.g. "prev": the previous token). A
head is planted by saying which slots its queries and keys read (QK: a score is high
where the query's slot and the key's slot map to the same head dimension) and which
slots its values read and its output writes (OV). Everything else is zero: MLPs write
nothing, unplanted heads write nothing, the LM head reads only the "out" block.

LayerNorm stays (it is part of our model). Each block holds one one-hot of the same size
whatever the tokens, so the norm of the residual stream does not depend on the input and
LayerNorm only rescales it: the clean and the corrupted runs differ only in which slot
is hot.
"""
from __future__ import annotations

import torch

from gptdecoder.model import GPT, GPTConfig

SCORE = 1.0  # query/key weights: the right key takes most of the attention, not all (softmax not saturated)
WRITE = 0.3  # value/output weights: a written one-hot about as large as the embedding's


class Layout:
    """Where each block of slots sits in the residual stream: blocks[name] = (start, size)."""

    def __init__(self, **sizes: int) -> None:
        self.blocks: dict[str, tuple[int, int]] = {}
        start = 0
        for name, size in sizes.items():
            self.blocks[name] = (start, size)
            start += size
        self.width = start

    def dim(self, block: str, slot: int) -> int:
        start, size = self.blocks[block]
        assert 0 <= slot < size, (block, slot)
        return start + slot

    def size(self, block: str) -> int:
        return self.blocks[block][1]


def planted_gpt(layout: Layout, vocab: int, block_size: int, n_layer: int, n_head: int) -> GPT:
    """A GPT whose token and position embeddings are one-hots in the "tok" and "pos" blocks
    and whose every other weight is zero (LayerNorms: weight 1, bias 0)."""
    d_head = max(vocab, block_size, -(-layout.width // n_head))  # room for every slot and head dim
    d_model = n_head * d_head
    config = GPTConfig(vocab_size=vocab, block_size=block_size, n_layer=n_layer, n_head=n_head, d_model=d_model,
                       mlp_ratio=1, tie_weights=False)
    model = GPT(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ln_" in name or name.startswith("ln_final"):
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            else:
                p.zero_()
        for t in range(vocab):
            model.wte.weight[t, layout.dim("tok", t)] = 1.0
        for i in range(block_size):
            model.wpe.weight[i, layout.dim("pos", i)] = 1.0
    return model.eval()


def plant_qk(model: GPT, layer: int, head: int, query: dict[int, int], key: dict[int, int], scale: float = SCORE) -> None:
    """Queries and keys: residual dim -> head dim. A query and a key whose dims map to the
    same head dim score high."""
    c_attn, d, hs = model.blocks[layer].attn.c_attn, model.config.d_model, model.config.d_head
    with torch.no_grad():
        for r, j in query.items():
            c_attn.weight[head * hs + j, r] = scale
        for r, j in key.items():
            c_attn.weight[d + head * hs + j, r] = scale


def plant_ov(model: GPT, layer: int, head: int, value: dict[int, int], output: dict[int, int], scale: float = WRITE) -> None:
    """Values read residual dims into head dims (value: r -> j); the output writes head dims
    back into residual dims (output: j -> r)."""
    block, d, hs = model.blocks[layer], model.config.d_model, model.config.d_head
    with torch.no_grad():
        for r, j in value.items():
            block.attn.c_attn.weight[2 * d + head * hs + j, r] = 1.0
        for j, r in output.items():
            block.attn.c_proj.weight[r, head * hs + j] = scale


def plant_readout(model: GPT, layout: Layout, block: str = "out", scale: float = 10.0) -> None:
    """The LM head reads token t from slot t of ``block``."""
    with torch.no_grad():
        for t in range(layout.size(block)):
            model.lm_head.weight[t, layout.dim(block, t)] = scale


def copy_slots(layout: Layout, src: str, dst: str, n: int) -> tuple[dict[int, int], dict[int, int]]:
    """(value, output) maps that copy slot i of ``src`` to slot i of ``dst`` through head dim i."""
    return {layout.dim(src, i): i for i in range(n)}, {i: layout.dim(dst, i) for i in range(n)}


def previous_token_qk(layout: Layout, block_size: int) -> tuple[dict[int, int], dict[int, int]]:
    """A query at position i and a key at position i - 1 share head dim i."""
    return ({layout.dim("pos", i): i for i in range(block_size)},
            {layout.dim("pos", i): i + 1 for i in range(block_size - 1)})
