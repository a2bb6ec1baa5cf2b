"""Position ids: given to the model (as Hugging Face's position_ids), coupled by a task,
offset in training, drawn at random as in training for randomized positions, and the
per-token accuracy beside exact match."""
from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from gptdecoder.config import config_from_dict
from gptdecoder.data.tasks import TaskBatches, evaluate_task, evaluation_positions
from gptdecoder.errors import UserError
from gptdecoder.model import GPT, POS_ENCODINGS, GPTConfig, KVCache, sorted_random_positions
from gptdecoder.tasks import get_task


def model_with(pos_encoding: str, block_size: int = 24, random_positions: int = 0) -> GPT:
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=12, block_size=block_size, n_layer=2, n_head=2, d_model=16,
                       pos_encoding=pos_encoding, random_positions=random_positions)
    return GPT(config).eval()


# -- the model ------------------------------------------------------------------------------


@pytest.mark.parametrize("pos_encoding", POS_ENCODINGS)
def test_dense_position_ids_change_nothing(pos_encoding):
    model = model_with(pos_encoding)
    idx = torch.randint(0, 12, (3, 10), generator=torch.Generator().manual_seed(1))
    plain, _ = model(idx)
    given, _ = model(idx, position_ids=torch.arange(10))
    per_row, _ = model(idx, position_ids=torch.arange(10).expand(3, -1))
    torch.testing.assert_close(given, plain)
    torch.testing.assert_close(per_row, plain)


@pytest.mark.parametrize("pos_encoding", ["learned", "rope", "alibi"])
def test_position_ids_matter_and_the_kv_cache_keeps_them(pos_encoding):
    """Repeating and jumping ids (as coupling makes them) change the output, and feeding
    tokens one at a time through the cache gives exactly the full forward's logits."""
    model = model_with(pos_encoding)
    idx = torch.randint(0, 12, (2, 9), generator=torch.Generator().manual_seed(2))
    pos = torch.tensor([[1, 2, 3, 0, 1, 2, 3, 9, 4], [5, 5, 5, 6, 7, 8, 20, 21, 22]])
    full, _ = model(idx, position_ids=pos)
    dense, _ = model(idx)
    assert (full - dense).abs().max() > 1e-5  # (small at initialisation, but there)
    cache = KVCache(model.config, 2, model.config.block_size)
    first, _ = model(idx[:, :4], kv_cache=cache, position_ids=pos[:, :4])
    steps = [first] + [model(idx[:, t : t + 1], kv_cache=cache, position_ids=pos[:, t : t + 1])[0]
                       for t in range(4, 9)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("pos_encoding", ["learned", "alibi"])
def test_generate_with_position_ids_matches_full_recompute(pos_encoding):
    model = model_with(pos_encoding)
    prompt = torch.randint(0, 12, (2, 5), generator=torch.Generator().manual_seed(3))
    pos = torch.tensor([[3, 2, 1, 0, 1, 2, 3, 4], [7, 6, 5, 4, 5, 6, 7, 8]])  # 5 prompt + 3 read of 4 new
    out = model.generate(prompt, 4, do_sample=False, position_ids=pos)
    seq = prompt
    for _ in range(4):  # greedy, recomputing everything at every step
        logits, _ = model(seq, position_ids=pos[:, : seq.size(1)])
        seq = torch.cat((seq, logits[:, -1].argmax(dim=-1, keepdim=True)), dim=1)
    assert out.tolist() == seq.tolist()


def test_bad_position_ids_are_clear_errors():
    model = model_with("learned", block_size=8)
    idx = torch.zeros((1, 4), dtype=torch.long)
    with pytest.raises(ValueError, match=r"position ids must be in \[0, 8\).*max 8"):
        model(idx, position_ids=torch.tensor([[0, 1, 2, 8]]))
    with pytest.raises(ValueError, match="position ids must be in"):
        model(idx, position_ids=torch.tensor([[-1, 0, 1, 2]]))
    with pytest.raises(ValueError, match="expected integers of shape"):
        model(idx, position_ids=torch.tensor([[0, 1, 2]]))
    with pytest.raises(ValueError, match="expected integers of shape"):
        model(idx, position_ids=torch.tensor([[0.0, 1.0, 2.0, 3.0]]))
    with pytest.raises(ValueError, match=r"expected \(1, >= 6\)"):
        model.generate(idx, 3, position_ids=torch.tensor([[0, 1, 2, 3, 4]]))


# -- randomized positions, evaluated as trained ---------------------------------------------


def test_sorted_random_positions_are_distinct_sorted_in_range_and_seeded():
    draw = lambda seed: sorted_random_positions(50, 9, 30, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    pos = draw(0)
    assert pos.shape == (50, 9)
    assert bool((pos[:, 1:] > pos[:, :-1]).all()) and int(pos.min()) >= 0 and int(pos.max()) < 30
    assert torch.equal(pos, draw(0)) and not torch.equal(pos, draw(1))
    assert len({tuple(r) for r in pos.tolist()}) > 40  # one draw per sequence
    with pytest.raises(ValueError, match="cannot be drawn"):
        sorted_random_positions(1, 31, 30)


def test_generate_draws_one_position_set_per_sequence_for_randomized_positions():
    """Without position ids, a randomized-positions model generates at a seeded sorted draw
    (repeatable, and not the dense positions), the same draw as given explicitly."""
    model = model_with("learned", block_size=12, random_positions=40)
    prompt = torch.randint(0, 12, (3, 4), generator=torch.Generator().manual_seed(4))
    a = model.generate(prompt, 5, seed=7)
    assert torch.equal(a, model.generate(prompt, 5, seed=7))
    generator = torch.Generator().manual_seed(7)
    drawn = sorted_random_positions(3, 8, 40, generator=generator)
    # the sampler continues with the same generator after the draw
    b = model.generate(prompt, 5, position_ids=drawn, do_sample=True, temperature=1.0)
    assert b.shape == a.shape
    greedy_dense = model.generate(prompt, 5, do_sample=False, position_ids=torch.arange(8))
    greedy_drawn = model.generate(prompt, 5, do_sample=False, position_ids=drawn)
    logits_drawn, _ = model(greedy_drawn[:, :8], position_ids=drawn)
    assert greedy_drawn[:, 4:].tolist() == logits_drawn[:, 3:8].argmax(-1).tolist()
    assert greedy_dense.shape == greedy_drawn.shape


def test_evaluation_positions_as_trained_and_dense():
    task = get_task("copy", length=6, min_length=1)
    model = model_with("learned", block_size=12, random_positions=40)
    prompts = [p for p, _ in task.with_length(5).test_examples(8)]
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    drawn = evaluation_positions(model, task, prompts, 5, "as_trained", g())
    assert drawn.shape == (8, 10) and torch.equal(drawn, evaluation_positions(model, task, prompts, 5, "as_trained", g()))
    assert bool((drawn[:, 1:] > drawn[:, :-1]).all()) and int(drawn.max()) < 40
    assert evaluation_positions(model, task, prompts, 5, "dense", g()).tolist() == [list(range(10))] * 8
    assert evaluation_positions(model_with("learned"), task, prompts, 5, "as_trained", g()) is None


def test_evaluate_task_is_reproducible_and_counts_tokens():
    task = get_task("copy", length=6, min_length=1)
    model = model_with("learned", block_size=12, random_positions=40)
    examples = task.test_examples(200)
    a = evaluate_task(model, task, examples=examples, seed=3)
    b = evaluate_task(model, task, examples=examples, seed=3)
    assert (a.accuracy, a.token_accuracy) == (b.accuracy, b.token_accuracy)
    answer_tokens = sum(len(ans) for _, ans in examples)
    right = sum(acc * sum(1 for _, ans in examples if len(ans) > j) for j, acc in enumerate(a.per_position_accuracy))
    assert a.token_accuracy == pytest.approx(right / answer_tokens)
    with pytest.raises(ValueError, match="expected one of as_trained, dense"):
        evaluate_task(model, task, examples=examples, positions="sorted")


# -- tasks that couple positions -------------------------------------------------------------


@pytest.mark.parametrize("name", ["copy", "reverse"])
def test_copy_and_reverse_couple_each_answer_token_with_its_source(name):
    task = get_task(name, length=9, min_length=1, num_digits=36, coupled_positions=True)
    rng = random.Random(0)
    for _ in range(50):
        prompt, answer = task.sample(rng)
        ids = task.position_ids(prompt, len(answer))
        n = len(prompt)
        assert len(ids) == n + len(answer)
        for j, sources in enumerate(task.source_positions(prompt, answer)):
            assert ids[n + j] == ids[sources[0]]  # the answer token shares its source's id
            # the token that predicts it sits one id before (copy) or after (reverse) the source
            assert ids[n + j - 1] == ids[sources[0]] - task.answer_step
        assert sorted(ids[: n - 1]) == list(range(1, n))


@pytest.mark.parametrize("reverse_output", [True, False])
def test_addition_couples_digits_of_one_significance(reverse_output):
    task = get_task("addition", num_digits=5, min_digits=1, reverse_output=reverse_output, coupled_positions=True)
    rng = random.Random(1)
    for _ in range(50):
        prompt, answer = task.sample(rng)
        ids = task.position_ids(prompt, len(answer))
        n = prompt.index(task.token("+"))
        for j, (a, b) in enumerate(task.source_positions(prompt, answer)):
            if j < len(answer) and (reverse_output and j < n or not reverse_output and j > 0):
                assert ids[len(prompt) + j] == ids[a] == ids[b]  # operand digits and sum digit of one place
        place = [ids[len(prompt) + j] - 1 for j in range(len(answer))]
        assert place == (list(range(n + 1)) if reverse_output else list(range(n, -1, -1)))


def test_a_task_that_does_not_couple_has_no_position_ids():
    task = get_task("sort", length=4, min_length=1)
    assert not task.couples_positions
    with pytest.raises(ValueError, match="does not couple positions"):
        task.position_ids([0, 1, 3], 2)


def test_training_offsets_coupled_ids_within_the_model_range():
    task = get_task("copy", length=6, min_length=1, coupled_positions=True)
    batches = TaskBatches(task, 64, seed=0, n_positions=30)
    batch = batches.get_batch(0)
    assert batch.pos is not None and batch.pos.shape == batch.x.shape
    assert int(batch.pos.min()) >= 0 and int(batch.pos.max()) < 30
    offsets = set()
    for row_x, row_pos in zip(batch.x.tolist(), batch.pos.tolist()):
        n = row_x.index(task.token("="))
        base = task.position_ids(row_x[: n + 1], n)[: n + 1]
        offset = row_pos[0] - base[0]
        assert [p - offset for p in row_pos[: n + 1]] == base  # one offset for the whole row
        offsets.add(offset)
    assert len(offsets) > 5  # drawn per row
    assert torch.equal(batch.pos, TaskBatches(task, 64, seed=0, n_positions=30).get_batch(0).pos)
    with pytest.raises(ValueError, match="needs the model's n_positions"):
        TaskBatches(task, 64, seed=0)


def config_with(**sections) -> dict:
    raw = {"model": {"n_layer": 1, "n_head": 2, "d_model": 16},
           "task": {"name": "copy", "params": {"length": 4, "min_length": 1, "coupled_positions": True}},
           "train": {"batch_size": 32, "max_iters": 4, "precision": "fp32"}}
    for key, value in sections.items():
        raw.setdefault(key, {}).update(value)
    return raw


def test_config_refuses_random_positions_with_coupling_and_bad_eval_positions():
    with pytest.raises(UserError, match="coupled_positions.*model.random_positions=64.*expected 0"):
        config_from_dict(config_with(model={"random_positions": 64}))
    with pytest.raises(UserError, match="eval.positions='sorted': expected one of as_trained, dense"):
        config_from_dict(config_with(eval={"positions": "sorted"}))


def test_coupled_copy_trains_and_reports_per_token_accuracy(tmp_path):
    """End to end: a coupled copy model learns its lengths, and results.json has exact
    match and per-token accuracy at every test length."""
    (tmp_path / "c.yaml").write_text(json.dumps(config_with(
        model={"n_layer": 2, "n_head": 4, "d_model": 64},
        task={"params": {"length": 4, "min_length": 1, "num_digits": 10, "coupled_positions": True}},
        train={"batch_size": 128, "max_iters": 200, "lr": 3e-3, "warmup_iters": 20, "eval_interval": 200,
               "stop_at_accuracy": None, "seed": 0},
        eval={"examples": 200, "quick_examples": 64, "train_examples": 64, "test_lengths": [1, 6]},
        output={"plots": False})))
    run = subprocess.run([sys.executable, "-m", "gptdecoder", "train", "-c", str(tmp_path / "c.yaml"),
                          "--out", str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["test_accuracy"] >= 0.9
    assert set(results["accuracy_by_length"]) == set(results["token_accuracy_by_length"]) == {str(n) for n in range(1, 7)}
    for n, exact in results["accuracy_by_length"].items():
        assert results["token_accuracy_by_length"][n] >= exact
    gen = subprocess.run([sys.executable, "-m", "gptdecoder", "generate", "--run", str(tmp_path / "run"),
                          "--prompt", "3141="], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert gen.returncode == 0, gen.stderr
    assert "-> 3 1 4 1" in gen.stdout


def test_the_offline_viewer_labels_tokens_with_their_coupled_ids(tmp_path):
    """The lab reads a coupled task at its own ids, and the viewer shows them ("@id")."""
    from browser_helpers import chromium, open_offline

    from gptdecoder.lab.capture import example_views
    from gptdecoder.lab.views import attention_viewer_html

    task = get_task("reverse", length=4, min_length=1, coupled_positions=True)
    model = model_with("learned", block_size=8)
    prompt, answer = [1, 2, 3, task.token("=")], [3, 2, 1]
    views = example_views(model, task, prompt, answer)
    assert views["position_ids"] == [1, 2, 3, 4, 3, 2]  # x = seq[:-1]: the last answer token is never read
    dense = example_views(model, get_task("reverse", length=4, min_length=1), prompt, answer)
    assert dense["position_ids"] is None
    assert not torch.allclose(views["probs"], dense["probs"])
    page_file = tmp_path / "viewer.html"
    page_file.write_text(attention_viewer_html(views["patterns"], views["tokens"], "coupled", views["boundary"],
                                               position_ids=views["position_ids"]))
    with chromium() as browser:
        opened = open_offline(browser, page_file)
        opened.page.hover('#grid td[data-q="4"][data-k="2"]')
        info = opened.page.inner_text("#info")
        assert 'query 4 "3" @3 -> key 2 "3" @3' in info  # an answer token and the digit it reproduces
        assert not opened.console_errors and not opened.network_requests()
    with pytest.raises(ValueError, match="5 position ids for 6 tokens"):
        attention_viewer_html(views["patterns"], views["tokens"], position_ids=[0] * 5)
