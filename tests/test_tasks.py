"""Synthetic tasks: the pinned sequence format, well-formed samples, a stable disjoint split."""
from __future__ import annotations

import random
import zlib

import pytest
import torch

from gptdecoder.errors import UserError
from gptdecoder.tasks import TASKS, build_example, get_task, prompt_hash


def test_sort_example_is_pinned():
    task = get_task("sort", length=5, num_digits=3)
    prompt = [1, 2, 1, 0, 1]
    answer = task.solve(prompt)
    assert answer == [0, 1, 1, 1, 2]
    x, y, mask = build_example(prompt, answer)
    assert x == [1, 2, 1, 0, 1, 0, 1, 1, 1]
    assert y == [2, 1, 0, 1, 0, 1, 1, 1, 2]
    assert mask == [0, 0, 0, 0, 1, 1, 1, 1, 1]


def test_split_hash_is_stable_across_processes():
    # CRC32 of the decimal text: the same number on every machine and Python version
    assert prompt_hash([1, 2, 3]) == zlib.crc32(b"1,2,3")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_samples_are_well_formed(name):
    task = get_task(name)
    assert task.name == name and task.vocab_size == len(task.symbols) == len(set(task.symbols))
    rng = random.Random(0)
    for _ in range(300):
        prompt, answer = task.sample(rng)
        assert prompt and answer
        assert all(0 <= t < task.vocab_size for t in prompt + answer)
        assert len(prompt) + len(answer) <= task.seq_len
        assert task.solve(prompt) == answer
        x, y, mask = build_example(prompt, answer)
        assert len(x) == len(y) == len(mask) == len(prompt) + len(answer) - 1
        assert sum(mask) == len(answer)
        assert task.format(prompt)  # printable with the task's symbols


@pytest.mark.parametrize("name", sorted(TASKS))
def test_split_is_disjoint_and_deterministic(name):
    task = get_task(name)
    test = task.test_examples(300)
    assert test == task.test_examples(300)  # same held-out set every time
    assert test and all(task.is_test(p) for p, _ in test)
    assert len({tuple(p) for p, _ in test}) == len(test)
    rng = random.Random(1)
    train_prompts = {tuple(task.sample_train(rng)[0]) for _ in range(300)}
    assert not train_prompts & {tuple(p) for p, _ in test}
    assert all(not task.is_test(p) for p, _ in task.train_examples(100))
    # a fresh instance (another process, another run) splits the same way
    assert [get_task(name).is_test(p) for p, _ in test] == [True] * len(test)


def test_small_spaces_are_enumerated():
    task = get_task("sort", length=6, num_digits=3)
    everything = list(task.all_prompts())
    assert len(everything) == 3**6
    test = task.test_examples(5000)
    assert len(test) == sum(task.is_test(p) for p in everything)  # all test prompts, not a sample


def test_repeat_boost_matches_prompt_weight():
    task = get_task("sort", length=6, num_digits=3, repeat_boost=2.0)
    rng = random.Random(0)
    n = 20000
    share = sum(task.is_repetitive(task.sample_prompt(rng)) for _ in range(n)) / n
    weights = [task.prompt_weight(p) for p in task.all_prompts()]
    expected = sum(w for w in weights if w > 1) / sum(weights)  # 39 * 3 / (690 + 39 * 3)
    assert abs(share - expected) < 0.02


def test_length_generalisation_variants():
    task = get_task("reverse", length=6)
    assert task.test_lengths(longer_by=2) == [6, 7, 8]  # the default: trained length, then longer
    longer = task.with_length(8)
    assert (longer.length, longer.min_length) == (8, 8) and longer.vocab_size == task.vocab_size
    assert get_task("sort").test_lengths(longer_by=2) == [6]  # fixed-length sort has no separator
    assert get_task("histogram", length=8).test_lengths(longer_by=3) == [8, 9]  # counts stop at 9


def test_examples_of_some_tasks():
    add = get_task("addition", num_digits=3, reverse_output=False)
    prompt = [0, 4, 7, add.token("+"), 1, 2, 5, add.token("=")]
    assert add.solve(prompt) == [0, 1, 7, 2]
    assert get_task("addition", num_digits=3).solve(prompt) == [2, 7, 1, 0]
    hist = get_task("histogram", length=4)
    a, b, c = 0, 1, 2
    assert [hist.symbols[t] for t in hist.solve([a, b, a, c, hist.token("=")])] == ["2", "1", "2", "1"]
    dyck = get_task("dyck", kinds=2)
    enc = {s: i for i, s in enumerate(dyck.symbols)}
    prompt = [enc[s] for s in "([()="]
    assert "".join(dyck.symbols[t] for t in dyck.solve(prompt)) == "])."
    recall = get_task("recall")
    assert recall.format(recall.solve(recall.sample(random.Random(3))[0]))


def test_get_task_errors_suggest():
    with pytest.raises(UserError, match="did you mean 'sort'"):
        get_task("srot")
    with pytest.raises(UserError, match="did you mean 'length'"):
        get_task("sort", lenght=4)
    with pytest.raises(UserError, match="num_digits"):
        get_task("sort", num_digits=37)


def test_recall_single_query_is_unchanged():
    task = get_task("recall")
    prompt, answer = task.sample(random.Random(3))
    assert task.format(prompt) == "d5e9g7b9?d" and task.format(answer) == "5"
    x, y, mask = build_example(prompt, answer)
    assert mask == [0] * 9 + [1] and y[-1] == answer[0] and x[-1] == prompt[-1]


def test_recall_multi_query_scores_every_recalled_value():
    task = get_task("recall", num_pairs=4, num_keys=8, num_values=10, num_queries=5)
    q = task.token("?")
    rng = random.Random(0)
    for _ in range(200):
        prompt, answer = task.sample(rng)
        assert len(prompt) + len(answer) == task.seq_len == 2 * 4 + 1 + 2 * 5
        pairs = dict(zip(prompt[0:8:2], prompt[1:8:2]))
        assert len(pairs) == 4 and prompt[8] == q
        tail = prompt[9:] + answer  # key, value, key, value, ...
        assert all(tail[i] in pairs and tail[i + 1] == pairs[tail[i]] for i in range(0, len(tail), 2))
        assert answer == [pairs[prompt[-1]]] == task.solve(prompt)
        x, y, mask = build_example(prompt, answer)
        assert sum(mask) == 5  # four values answered in the prompt, and the answer
        assert all(x[i] in pairs and y[i] == pairs[x[i]] for i in range(len(y)) if mask[i])
    test = task.test_examples(100)
    assert all(task.is_test(p) and task.solve(p) == a for p, a in test)


def test_recall_multi_query_batches_and_errors():
    from gptdecoder.data.tasks import TaskBatches

    task = get_task("recall", num_queries=3)
    x, y, mask, _ = TaskBatches(task, 16, seed=0).get_batch(0)
    assert x.shape == (16, task.seq_len - 1) and mask.sum().item() == 16 * 3
    assert (y[mask.bool()] < task.num_values).all()  # only values are learned, never keys
    with pytest.raises(UserError, match="num_queries"):
        get_task("recall", num_queries=0)


def test_recall_curriculum_draws_fewer_pairs_in_early_training_steps_only():
    base = get_task("recall", num_pairs=4, num_queries=3)
    assert base.curriculum_pairs is None and base.curriculum_steps == 0
    task = get_task("recall", num_pairs=4, num_queries=3, curriculum_pairs=2, curriculum_steps=3)
    assert task.seq_len == base.seq_len and task.vocab_size == base.vocab_size
    q = task.token("?")
    # held-out prompts, sample and the train-accuracy set are unchanged: always num_pairs pairs
    assert task.test_examples(50) == base.test_examples(50)
    assert task.sample(random.Random(5)) == base.sample(random.Random(5))
    assert all(p.index(q) == 8 for p, _ in task.train_examples(50))
    # steps 0..2 draw 2 pairs (never a test prompt); from step 3 on the draws are the plain task's
    for step in range(6):
        rng, base_rng = random.Random(step), random.Random(step)
        for _ in range(10):
            prompt, answer = task.sample_train(rng, step)
            n = prompt.index(q) // 2
            assert n == (2 if step < 3 else 4) and not task.is_test(prompt)
            pairs = dict(zip(prompt[0 : 2 * n : 2], prompt[1 : 2 * n : 2]))
            assert len(pairs) == n and len(prompt) == 2 * n + 2 * 3
            assert answer == [pairs[prompt[-1]]] == task.solve(prompt)
            x, y, mask = build_example(prompt, answer)
            assert sum(mask) == 3 and all(y[i] == pairs[x[i]] for i in range(len(y)) if mask[i])
            if step >= 3:
                assert (prompt, answer) == base.sample_train(base_rng, step)
    # a batch depends only on (seed, rank, step): asking again, or out of order, gives the same
    from gptdecoder.data.tasks import TaskBatches

    batches = TaskBatches(task, 16, seed=0)
    x, y, mask, _ = batches.get_batch(0)
    assert x.shape == (16, 2 * 2 + 2 * 3) and mask.sum().item() == 16 * 3
    late = batches.get_batch(5)
    assert late[0].shape == (16, task.seq_len - 1) and late[2].sum().item() == 16 * 3
    for again, first in zip(TaskBatches(task, 16, seed=0).get_batch(0), (x, y, mask)):
        assert torch.equal(again, first)
    # a config with the curriculum still gets the block size num_pairs needs
    from gptdecoder.config import config_from_dict, resolve_task

    params = {"num_pairs": 4, "num_queries": 3, "curriculum_pairs": 2, "curriculum_steps": 3}
    config = config_from_dict({"task": {"name": "recall", "params": params}, "eval": {"longer_by": 0}})
    assert resolve_task(config).model.block_size == task.seq_len - 1
    config = config_from_dict({"task": {"name": "recall", "params": params}})  # and 2 pairs more to test on
    assert resolve_task(config).model.block_size == task.with_length(6).seq_len - 1 == task.seq_len - 1 + 4
    # without curriculum_pairs (the default) or with 0 steps, training draws are unchanged
    for kwargs in ({"curriculum_steps": 10}, {"curriculum_pairs": 2}):
        other = get_task("recall", num_pairs=4, num_queries=3, **kwargs)
        a, b = random.Random(1), random.Random(1)
        assert [other.sample_train(a) for _ in range(20)] == [base.sample_train(b) for _ in range(20)]
    for bad in ({"curriculum_pairs": 0}, {"curriculum_pairs": 5}, {"curriculum_steps": -1}):
        with pytest.raises(UserError, match="curriculum_"):
            get_task("recall", num_pairs=4, **bad)
