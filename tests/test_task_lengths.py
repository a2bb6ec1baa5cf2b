"""Task lengths: every size knob changes what is generated, train/test length ranges in the
config, block sizes that hold the longest test length, and exact match per test length."""
from __future__ import annotations

import json
import random

import pytest
import torch

from gptdecoder.config import config_from_dict, load_config, resolve_task
from gptdecoder.data.tasks import TaskData, evaluate_task, length_summary
from gptdecoder.errors import UserError
from gptdecoder.model import GPTConfig
from gptdecoder.tasks import TASKS, get_task
from gptdecoder.train import train_from_config


def prompt_length(task, prompt) -> int:
    """A prompt's length in its task's unit, measured independently of the task's code."""
    if task.name == "addition":
        return list(prompt).index(task.token("+"))  # digits per operand
    if task.name == "recall":
        return list(prompt).index(task.token("?")) // 2  # key-value pairs
    return len(prompt) - 1  # the symbols before the closing '='


def oracle(task, prompt) -> list[int]:
    """The right answer, recomputed from the task's definition (not task.solve)."""
    p = list(prompt)
    if task.name == "sort":
        return sorted(p[:-1])
    if task.name == "copy":
        return p[:-1]
    if task.name == "reverse":
        return p[:-1][::-1]
    if task.name == "histogram":
        return [task.token(str(p[:-1].count(t))) for t in p[:-1]]
    if task.name == "parity":
        bits = [sum(p[: i + 1]) % 2 for i in range(len(p) - 1)]
        return bits if task.running else bits[-1:]
    if task.name == "addition":
        n = p.index(task.token("+"))
        a, b = int("".join(map(str, p[:n]))), int("".join(map(str, p[n + 1 : 2 * n + 1])))
        digits = [int(c) for c in f"{a + b:0{n + 1}d}"]
        return digits[::-1] if task.reverse_output else digits
    if task.name == "recall":
        q = p.index(task.token("?"))
        pairs = dict(zip(p[0:q:2], p[1:q:2]))
        assert len(pairs) == q // 2  # distinct keys
        return [pairs[p[-1]]]
    if task.name == "dyck":
        text = "".join(task.symbols[t] for t in p[:-1])
        stack = []
        for c in text:
            if c in "([{":
                stack.append(c)
            else:
                assert "([{"[")]}".index(c)] == stack.pop()
        closing = "".join({"(": ")", "[": "]", "{": "}"}[c] for c in reversed(stack)) + "."
        return [task.token(c) for c in closing]
    raise AssertionError(task.name)


RANGES = {  # task -> params with a training range of lengths
    "sort": {"length": 7, "min_length": 2, "num_digits": 4},
    "copy": {"length": 9, "min_length": 3, "num_digits": 5},
    "reverse": {"length": 6, "min_length": 1},
    "histogram": {"length": 7, "min_length": 2, "num_letters": 3},
    "parity": {"length": 8, "min_length": 2},
    "addition": {"num_digits": 5, "min_digits": 2},
    "recall": {"num_pairs": 5, "min_pairs": 2, "num_queries": 3},
    "dyck": {"length": 9, "min_length": 3, "kinds": 3, "max_depth": 3},
}


def test_every_task_with_a_size_has_a_training_range():
    assert set(RANGES) == set(TASKS) - {"modular"}
    assert get_task("modular").length_range is None and not get_task("modular").length_varies


@pytest.mark.parametrize("name", sorted(RANGES))
def test_training_range_draws_every_length_and_right_answers(name):
    task = get_task(name, **RANGES[name])
    lo, hi = task.length_range
    rng = random.Random(0)
    seen = set()
    for step in range(600):
        prompt, answer = task.sample_train(rng, step)
        n = prompt_length(task, prompt)
        assert lo <= n <= hi and not task.is_test(prompt)
        assert answer == oracle(task, prompt) == task.solve(prompt)
        assert len(prompt) + len(answer) <= task.seq_len
        seen.add(n)
    assert seen == set(range(lo, hi + 1))
    held_out = task.test_examples(300)
    lengths = {prompt_length(task, p) for p, _ in held_out}  # a tiny space (2 bits) may hold none out
    assert lengths <= set(range(lo, hi + 1)) and {hi - 1, hi} <= lengths
    assert all(task.is_test(p) and a == oracle(task, p) for p, a in held_out)


@pytest.mark.parametrize("name", sorted(RANGES))
def test_with_length_makes_exactly_that_length(name):
    task = get_task(name, **RANGES[name])
    lo, hi = task.length_range
    for n in (1, lo, hi, hi + 2):
        variant = task.with_length(n)
        assert variant.length_range == (n, n) and variant.vocab_size == task.vocab_size
        examples = variant.test_examples(50)
        assert examples or n <= 2  # a few symbols (2 bits): the held-out side may be empty
        assert all(prompt_length(task, p) == n for p, _ in examples)
        assert all(a == oracle(task, p) and len(p) + len(a) <= variant.seq_len for p, a in examples)
        # the held-out prompts of a length are the task's own held-out prompts of that length
        assert all(task.is_test(p) for p, _ in examples)
    assert task.with_length(hi + 2).seq_len > task.seq_len


def test_size_knobs_change_what_is_generated():
    def tokens(task, n=300):
        rng = random.Random(1)
        return {t for _ in range(n) for t in task.sample(rng)[0]}

    assert tokens(get_task("sort", num_digits=4)) == {0, 1, 2, 3}
    assert tokens(get_task("copy", num_digits=3)) == {0, 1, 2, 3}  # 3 is '='
    wide = get_task("copy", num_digits=36)  # base-36 digits: 0-9, then a-z
    assert tokens(wide, 2000) == set(range(37)) and wide.symbols[35] == "z" and wide.format([35, 0, 36]) == "z0="
    with pytest.raises(UserError, match="num_digits=37: expected 2..36"):
        get_task("reverse", num_digits=37)
    histogram = get_task("histogram", num_letters=5)
    assert tokens(histogram) == set(range(5)) | {histogram.token("=")}
    recall = get_task("recall", num_pairs=3, num_keys=4, num_values=2)
    assert tokens(recall) == {0, 1} | {2, 3, 4, 5} | {recall.token("?")}
    assert tokens(get_task("modular", modulus=5)) == set(range(5)) | {5, 6}
    dyck = get_task("dyck", length=12, kinds=1, max_depth=2)
    rng = random.Random(2)
    for _ in range(200):
        prompt, answer = dyck.sample(rng)
        depth = 0
        for t in prompt[:-1]:
            depth += 1 if t == dyck.token("(") else -1
            assert 0 <= depth <= 2
        assert len(answer) == depth + 1
    addition = get_task("addition", num_digits=4, reverse_output=False)
    prompt, answer = addition.sample(random.Random(0))
    assert len(prompt) == 10 and len(answer) == 5 and answer == oracle(addition, prompt)


def test_lengths_the_task_cannot_make():
    with pytest.raises(ValueError, match="9"):
        get_task("histogram").with_length(10)
    with pytest.raises(ValueError, match="num_keys"):
        get_task("recall", num_keys=6).with_length(7)
    with pytest.raises(ValueError, match="100"):
        get_task("addition").with_length(101)
    with pytest.raises(ValueError, match="no variable length"):
        get_task("modular").with_length(3)
    with pytest.raises(ValueError, match="min_length"):
        get_task("sort").with_length(3)  # fixed length, no end marker
    for bad in ({"min_length": 0}, {"min_length": 9, "length": 8}):
        with pytest.raises(UserError, match="min_length"):
            get_task("copy", **bad)
    with pytest.raises(UserError, match="min_digits"):
        get_task("addition", num_digits=3, min_digits=4)
    with pytest.raises(UserError, match="min_pairs"):
        get_task("recall", num_pairs=3, min_pairs=0)


def test_recall_with_length_drops_the_curriculum():
    task = get_task("recall", num_pairs=4, num_queries=3, curriculum_pairs=2, curriculum_steps=100)
    one = task.with_length(1)  # fewer pairs than the curriculum's: still a valid task
    assert (one.num_pairs, one.curriculum_pairs, one.curriculum_steps) == (1, None, 0)


def test_default_test_lengths_are_the_training_range_and_longer_by():
    assert get_task("copy", length=5, min_length=3).test_lengths(longer_by=2) == [3, 4, 5, 6, 7]
    assert get_task("copy", length=5, min_length=3).test_lengths([1, 9]) == list(range(1, 10))
    assert get_task("addition", num_digits=3).test_lengths(longer_by=2) == [3, 4, 5]
    assert get_task("recall", num_pairs=7, num_keys=8).test_lengths(longer_by=2) == [7, 8]
    assert get_task("modular").test_lengths(longer_by=2) == []
    # a given block_size drops the longer lengths that do not fit (x is seq[:-1])
    copy = get_task("copy", length=5)
    assert copy.test_lengths(longer_by=3, block_size=copy.with_length(6).seq_len - 1) == [5, 6]


def config(task: dict, eval_: dict = None, model: dict = None):
    raw = {"task": task, "model": {"n_layer": 1, "n_head": 1, "d_model": 8, **(model or {})}}
    return config_from_dict({**raw, "eval": eval_ or {}})


def test_block_size_holds_the_longest_test_length():
    copy = {"name": "copy", "params": {"length": 8, "min_length": 1}}
    assert resolve_task(config(copy)).model.block_size == 2 * 10 + 1 - 1  # longer_by 2 by default
    assert resolve_task(config(copy, {"test_lengths": [1, 16]})).model.block_size == 2 * 16 + 1 - 1
    assert resolve_task(config(copy, {"test_lengths": [1, 4]})).model.block_size == 2 * 8 + 1 - 1  # training's
    addition = {"name": "addition", "params": {"num_digits": 3, "min_digits": 1}}
    assert resolve_task(config(addition, {"test_lengths": [1, 6]})).model.block_size == 3 * 6 + 3 - 1
    recall = {"name": "recall", "params": {"num_pairs": 3, "num_queries": 2}}
    assert resolve_task(config(recall, {"test_lengths": [1, 6]})).model.block_size == 2 * 6 + 1 + 4 - 1
    # an explicit block_size that holds it is kept
    fits = config(copy, {"test_lengths": [1, 16]}, {"block_size": 40})
    assert resolve_task(fits).model.block_size == 40
    # modular and fixed-length sort: no lengths, the training sequence alone
    assert resolve_task(config({"name": "modular"})).model.block_size == 4
    assert resolve_task(config({"name": "sort"})).model.block_size == 11


@pytest.mark.parametrize("task, eval_, model, message", [
    ({"name": "copy"}, {"test_lengths": [5, 3]}, {}, r"eval.test_lengths=\[5, 3\]: expected \[lo, hi\] with 1 <= lo <= hi"),
    ({"name": "copy"}, {"test_lengths": [0, 3]}, {}, r"eval.test_lengths=\[0, 3\]: expected \[lo, hi\] with 1 <= lo"),
    ({"name": "copy"}, {"test_lengths": [4]}, {}, r"eval.test_lengths=\[4\]: expected \[lo, hi\]"),
    ({"name": "copy"}, {"test_lengths": [1, 2, 3]}, {}, r"eval.test_lengths=\[1, 2, 3\]: expected \[lo, hi\]"),
    ({"name": "copy"}, {"test_lengths": 8}, {}, r"eval.test_lengths=8: expected list or null"),
    ({"name": "histogram"}, {"test_lengths": [1, 12]}, {}, r"eval.test_lengths=\[1, 12\]: task 'histogram' cannot make length 12"),
    ({"name": "recall", "params": {"num_keys": 5, "num_pairs": 2}}, {"test_lengths": [1, 6]}, {},
     r"task 'recall' cannot make length 6; num_pairs=6: expected 1..num_keys \(5\)"),
    ({"name": "modular"}, {"test_lengths": [1, 4]}, {}, r"eval.test_lengths=\[1, 4\]: task 'modular' has no variable length"),
    ({"name": "sort"}, {"test_lengths": [1, 8]}, {}, r"eval.test_lengths=\[1, 8\]: task 'sort' without task.params.min_length"),
    ({"name": "copy", "params": {"length": 8}}, {"test_lengths": [1, 16]}, {"block_size": 20},
     r"model.block_size=20 is too short for eval.test_lengths=\[1, 16\]: task 'copy' at length 16 needs block_size >= 32"),
    ({"name": "copy"}, {"longer_by": -1}, {}, r"eval.longer_by=-1: expected an integer >= 0"),
])
def test_test_lengths_errors_are_one_line_naming_key_and_value(task, eval_, model, message):
    with pytest.raises(UserError, match=message) as error:
        config(task, eval_, model)
    assert "\n" not in str(error.value)


def test_test_lengths_from_the_command_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {n_layer: 1, n_head: 1, d_model: 8}\ntask: {name: copy, params: {length: 4, min_length: 1}}\n")
    loaded = load_config(path, ["eval.test_lengths=[2, 9]"])
    assert loaded.eval.test_lengths == [2, 9] and resolve_task(loaded).model.block_size == 2 * 9
    with pytest.raises(UserError, match="eval.test_lengths"):
        load_config(path, ["task.name=modular", "task.params={}", "eval.test_lengths=[2, 9]"])


class CopiesFirstFive(torch.nn.Module):
    """A stand-in "model" for copy whose answer is the first five digits, then zeros: right
    on every prompt of up to five digits, and on a longer one exactly when its digits from
    the sixth on are all 0 -- so its exact match per length can be counted by hand."""

    def __init__(self, block_size: int) -> None:
        super().__init__()
        self.config = GPTConfig(vocab_size=3, block_size=block_size)

    def generate(self, prompts: torch.Tensor, n: int, do_sample: bool = False, position_ids=None) -> torch.Tensor:
        digits = prompts[:, :-1]
        answer = torch.zeros_like(digits[:, :n])
        answer[:, :5] = digits[:, :5]
        return torch.cat([prompts, answer], dim=1)


def test_accuracy_by_length_counts_by_hand():
    cfg = config({"name": "copy", "params": {"length": 7, "min_length": 6, "num_digits": 2}},
                 {"test_lengths": [5, 11], "examples": 400, "train_examples": 50})
    resolved = resolve_task(cfg)
    data = TaskData(resolved, batch_size=8)
    model = CopiesFirstFive(resolved.model.block_size)
    results = data.final_scores(model)
    assert results["train_min_length"] == 6 and results["train_max_length"] == 7
    by_length = results["accuracy_by_length"]
    assert list(by_length) == [str(n) for n in range(5, 12)]
    task = data.task
    for n in range(5, 12):
        held_out = task.with_length(n).test_examples(400)
        assert held_out and all(len(p) == n + 1 and task.is_test(p) for p, _ in held_out)
        expected = sum(all(d == 0 for d in p[5:-1]) for p, _ in held_out) / len(held_out)
        assert by_length[str(n)] == pytest.approx(expected)
        assert expected == 1.0 if n == 5 else expected < 0.6  # 2 digits: 1 in 2^(n-5) tails are 0
    assert results["length_generalization"] == {str(n): by_length[str(n)] for n in range(8, 12)}
    # test_accuracy stays the held-out set of the training distribution (lengths 3..6)
    assert results["test_accuracy"] == evaluate_task(model, task, examples=data.test_set).accuracy
    lines = data.summary(results)
    assert any(line.startswith("exact match by length (trained 6-7): 5 100% 6 ") and " | 8 " in line
               for line in lines)


def test_accuracy_by_length_of_fixed_length_tasks():
    cfg = config({"name": "sort", "params": {"length": 4, "num_digits": 3}}, {"examples": 100, "train_examples": 20})
    data = TaskData(resolve_task(cfg), batch_size=8)

    class Sorts(CopiesFirstFive):
        def generate(self, prompts, n, do_sample=False, position_ids=None):
            return torch.cat([prompts, prompts.sort(dim=1).values], dim=1)

    results = data.final_scores(Sorts(7))
    assert results["accuracy_by_length"] == {"4": 1.0} == {"4": results["test_accuracy"]}
    assert (results["train_min_length"], results["train_max_length"], results["length_generalization"]) == (4, 4, {})
    assert not any(line.startswith("exact match by length") for line in data.summary(results))
    modular = TaskData(resolve_task(config({"name": "modular", "params": {"modulus": 5}})), batch_size=8)
    assert modular.scores_by_length(Sorts(4), None, "as_trained") == ({}, {})


def test_length_summary_is_compact():
    scores = {"1": 1.0, "2": 1.0, "3": 0.995, "4": 1.0, "5": 1.0, "6": 0.5, "7": 0.0, "8": 0.0}
    assert length_summary(scores, 2, 4) == "exact match by length (trained 2-4): 1-2 100% 3 99.5% 4 100% | 5 100% 6 50% 7-8 0%"
    assert length_summary({"3": 0.25}, 3, 3) == "exact match by length (trained 3): 3 25%"


def test_results_json_of_a_trained_run(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "model: {n_layer: 1, n_head: 2, d_model: 16}\n"
        "task: {name: reverse, params: {length: 4, min_length: 2, num_digits: 3}}\n"
        "train: {batch_size: 32, max_iters: 6, eval_interval: 3, log_interval: 3, warmup_iters: 2, precision: fp32}\n"
        "eval: {examples: 40, train_examples: 20, test_lengths: [1, 7]}\noutput: {plots: false}\n")
    cfg = load_config(path, [f"output.dir={tmp_path / 'run'}"])
    returned = train_from_config(cfg, progress=False, verbose=False)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["accuracy_by_length"] == returned["accuracy_by_length"]
    assert set(results["accuracy_by_length"]) <= {str(n) for n in range(1, 8)}
    assert {str(n) for n in range(2, 8)} <= set(results["accuracy_by_length"])  # 1 digit of 3: maybe none held out
    assert (results["train_min_length"], results["train_max_length"]) == (2, 4)
    assert set(results["length_generalization"]) == {"5", "6", "7"}
    assert all(0.0 <= a <= 1.0 for a in results["accuracy_by_length"].values())
