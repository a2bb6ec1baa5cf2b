"""generate(): KV-cache generation gives exactly the tokens of full-recompute generation."""
from __future__ import annotations

from typing import Optional

import pytest
import torch

from conftest import tiny_model
from gptdecoder.model import GPT
from gptdecoder.sampling import sample_next

BLOCK = 10


@pytest.fixture(scope="module")
def model() -> GPT:
    # sharper logits than the 0.02 init, so sampling choices matter
    return tiny_model(vocab_size=23, block_size=BLOCK, n_head=3, d_model=24, embedding_scale=20)


@torch.no_grad()
def reference(model: GPT, idx: torch.Tensor, n: int, stop_tokens=(), seed: Optional[int] = None, **sampling) -> torch.Tensor:
    """The minGPT/nanoGPT way: re-run the (cropped) context for every token, no cache."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    done = torch.zeros(idx.size(0), dtype=torch.bool)
    for _ in range(n):
        logits, _ = model(idx[:, -model.config.block_size :])
        next_id = sample_next(logits[:, -1, :], generator=generator, **sampling)
        if stop_tokens:
            next_id = torch.where(done[:, None], idx[:, -1:], next_id)
            done |= torch.isin(next_id[:, 0], torch.tensor(stop_tokens))
        idx = torch.cat((idx, next_id), dim=1)
        if stop_tokens and done.all():
            break
    return idx


@pytest.mark.parametrize(
    "sampling",
    [
        dict(do_sample=False),
        dict(temperature=0.8),
        dict(temperature=1.3, top_k=5),
        dict(top_p=0.7),
        dict(top_k=8, top_p=0.9, temperature=0.9),
    ],
)
def test_same_tokens_as_full_recompute_across_block_size(model, sampling):
    prompt = torch.randint(0, 23, (3, 4))  # batch of 3; 4 + 20 tokens crosses block_size=10
    ours = model.generate(prompt, 20, seed=7, **sampling)
    assert ours.shape == (3, 24)
    assert torch.equal(ours[:, :4], prompt)
    assert torch.equal(ours, reference(model, prompt, 20, seed=7, **sampling))


def test_seed_makes_sampling_reproducible(model):
    prompt = torch.zeros(2, 1, dtype=torch.long)
    a, b = model.generate(prompt, 15, seed=3), model.generate(prompt, 15, seed=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, model.generate(prompt, 15, seed=4))


def test_stop_tokens(model):
    prompt = torch.randint(0, 23, (4, 3))
    free = model.generate(prompt, 12, seed=1)
    stop = [int(free[0, 5]), int(free[1, 7])]  # tokens that do occur, so some rows stop
    ours = model.generate(prompt, 12, seed=1, stop_tokens=stop)
    assert torch.equal(ours, reference(model, prompt, 12, stop_tokens=stop, seed=1))
    for row in ours[:, 3:]:
        hits = [i for i, t in enumerate(row.tolist()) if t in stop]
        if hits:  # after the first stop token the row only repeats it
            assert torch.all(row[hits[0] :] == row[hits[0]])


def test_greedy_with_a_prompt_longer_than_block_size(model):
    prompt = torch.randint(0, 23, (2, 15))
    ours = model.generate(prompt, 5, do_sample=False)
    assert torch.equal(ours, reference(model, prompt, 5, do_sample=False))


def test_generate_argument_errors(model):
    prompt = torch.zeros(1, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"\[0, 23\)"):
        model.generate(torch.tensor([[5, 23]]), 3)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(prompt, 3, temperature=0)
    with pytest.raises(ValueError, match="top_p"):
        model.generate(prompt, 3, top_p=0)
    with pytest.raises(ValueError, match="top_k"):
        model.generate(prompt, 3, top_k=0)
    assert torch.equal(model.generate(prompt, 0), prompt)


def test_generate_under_bf16_autocast(model):
    from gptdecoder import runtime

    with runtime.autocast("cpu", "bf16"):
        out = model.generate(torch.zeros(2, 1, dtype=torch.long), 12, do_sample=False)
    assert out.shape == (2, 13) and int(out.max()) < 23


def test_generated_tokens_can_be_trained_on(model):
    """generate runs under inference_mode internally; its output must still work with autograd."""
    out = model.generate(torch.zeros(2, 1, dtype=torch.long), 6, seed=0)
    assert not out.is_inference()
    model.train()
    try:
        _, loss = model(out[:, :-1], out[:, 1:])
        loss.backward()
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_without_the_cache_generation_gives_the_same_tokens():
    """use_cache=False re-encodes the window at each step: the same tokens, greedy or sampled."""
    from conftest import tiny_model

    model = tiny_model(vocab_size=13, block_size=8, n_layer=2, n_head=2, d_model=16, noise=0.3)
    idx = torch.randint(0, 13, (2, 3), generator=torch.Generator().manual_seed(0))
    for kwargs in ({"do_sample": False}, {"temperature": 0.8, "top_k": 5, "seed": 3}):
        cached = model.generate(idx, 10, **kwargs)  # runs past block_size: the window slides
        torch.testing.assert_close(model.generate(idx, 10, use_cache=False, **kwargs), cached)
