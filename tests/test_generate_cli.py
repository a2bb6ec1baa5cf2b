"""``python -m gptdecoder generate``: streaming equals GPT.generate; task prompts; the REPL."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from conftest import tiny_model
from lab_runs import train_text_run, write_run
from gptdecoder import cli
from gptdecoder.commands.generate import Session, add_arguments, repl, stream_tokens

SHARP = 25  # token embeddings x 25: larger logits than the 0.02 init, so choices depend on the context


@pytest.fixture
def only_my_commands(monkeypatch):
    """cli.main with just generate and export, so other commands' imports cannot interfere."""
    monkeypatch.setattr(cli, "COMMANDS", {k: cli.COMMANDS[k] for k in ("generate", "export")})


@pytest.mark.parametrize("sampling", [dict(temperature=0.0), dict(temperature=0.9, top_k=5, seed=3),
                                      dict(temperature=1.3, top_p=0.8, seed=7)])
def test_stream_makes_the_choices_of_generate(sampling):
    model = tiny_model(vocab_size=13, block_size=8, embedding_scale=SHARP)
    prompt = [1, 5, 2]
    seed = sampling.pop("seed", None)
    temperature = sampling.pop("temperature")
    expected = model.generate(torch.tensor([prompt]), 20, temperature=temperature or 1.0,
                              do_sample=temperature > 0, seed=seed, **sampling)[0, 3:].tolist()
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    got = list(stream_tokens(model, prompt, 20, temperature, generator=generator, **sampling))
    assert got == expected  # 20 new tokens: the window slides past block_size=8


def test_long_prompt_feeds_only_the_last_window():
    model = tiny_model(vocab_size=13, block_size=8, embedding_scale=SHARP)
    prompt = [i % 13 for i in range(30)]
    assert list(stream_tokens(model, prompt, 5, 0.0)) == list(stream_tokens(model, prompt[-8:], 5, 0.0))


@pytest.fixture
def sort_run(tmp_path) -> Path:
    model = tiny_model(vocab_size=3, block_size=11, embedding_scale=SHARP)
    return write_run(tmp_path / "sort", model, {"task": {"name": "sort", "params": {"length": 6, "num_digits": 3}}})


def test_task_prompt_in_symbols(sort_run, capsys, only_my_commands):
    assert cli.main(["generate", "--run", str(sort_run), "--prompt", "2 1 0 1 2 0"]) == 0
    out = capsys.readouterr().out.strip()
    prompt, _, rest = out.partition(" -> ")
    assert prompt == "2 1 0 1 2 0"
    answer = rest.split("  (")[0].split()
    assert len(answer) == 6 and set(answer) <= {"0", "1", "2"}
    expected = "correct" if answer == sorted("210120") else "expected 0 0 1 1 2 2"
    assert expected in out


def test_task_answer_is_greedy_decoding(sort_run, capsys, only_my_commands):
    from gptdecoder.runs import load_run

    model = load_run(sort_run).model
    greedy = model.generate(torch.tensor([[2, 1, 0, 1, 2, 0]]), 6, do_sample=False)[0, 6:].tolist()
    cli.main(["generate", "--run", str(sort_run), "--prompt", "210120"])  # glued symbols work too
    assert capsys.readouterr().out.split(" -> ")[1].split("  (")[0].split() == [str(t) for t in greedy]


@pytest.mark.parametrize("prompt, message", [("2 1 x", "'x' is not one of the task's symbols: 0 1 2"),
                                             ("", "empty prompt")])
def test_bad_task_prompt_is_one_line(sort_run, capsys, only_my_commands, prompt, message):
    assert cli.main(["generate", "--run", str(sort_run), "--prompt", prompt]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err and err.count("\n") == 1


def test_missing_run_is_a_user_error(tmp_path, capsys, only_my_commands):
    assert cli.main(["generate", "--run", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def session_for(run_dir: Path, *argv: str) -> tuple[Session, list]:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--run", str(run_dir), *argv])

    class Out:
        def __init__(self):
            self.parts: list = []

        def write(self, s):
            self.parts.append(s)

        def flush(self):
            pass

    out = Out()
    return Session(run_dir, args, out), out.parts


def scripted(lines):
    """An input() stand-in: returns the lines, raises the exceptions, then EOF."""
    items = iter(lines)

    def read(prompt):
        assert prompt == ">> "
        item = next(items, EOFError)
        if isinstance(item, type) and issubclass(item, BaseException):
            raise item()
        return item

    return read


def test_repl_keeps_going_after_errors_and_ctrl_c(sort_run, monkeypatch):
    session, parts = session_for(sort_run)
    answers = iter([KeyboardInterrupt, None])
    original = session.respond

    def respond(line):  # the second prompt is "interrupted" mid-generation
        if line == "0 0 0 0 0 0" and next(answers) is KeyboardInterrupt:
            raise KeyboardInterrupt
        original(line)

    monkeypatch.setattr(session, "respond", respond)
    repl(session, scripted(["2 1 0 1 2 0", "0 0 0 0 0 0", "2 2 q", KeyboardInterrupt, "1 1 1 0 0 0", "quit", "2 2 2"]))
    text = "".join(parts)
    assert text.count(" -> ") == 2  # two answered, then quit before the last
    assert "[stopped]" in text and "error: 'q' is not one of the task's symbols" in text


def test_repl_exits_on_eof(sort_run):
    session, parts = session_for(sort_run)
    repl(session, scripted(["1 0 1 0 1 0"]))  # then EOF (Ctrl-D)
    assert "".join(parts).count(" -> ") == 1


# -- text runs ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def char_run(tmp_path_factory) -> Path:
    return train_text_run(tmp_path_factory.mktemp("char"))


def test_text_generation_streams_the_prompt_and_continuation(char_run, capsys, only_my_commands):
    argv = ["generate", "--run", str(char_run), "--prompt", "ROMEO:", "--max-new-tokens", "40",
            "--temperature", "0.8", "--top-k", "200", "--seed", "1"]
    assert cli.main(argv) == 0
    first = capsys.readouterr().out
    assert first.startswith("ROMEO:") and len(first) == len("ROMEO:") + 40 + 1
    cli.main(argv)
    assert capsys.readouterr().out == first  # same seed, same text


def test_text_generation_matches_model_generate(char_run, capsys, only_my_commands):
    from gptdecoder.data.tokenizers import TOKENIZER_DIR, load_tokenizer
    from gptdecoder.runs import load_run

    tokenizer = load_tokenizer(char_run / TOKENIZER_DIR)
    model = load_run(char_run).model
    ids = tokenizer.encode("JULIET: ")
    expected = model.generate(torch.tensor([ids]), 50, temperature=0.8, top_k=200, seed=1)[0].tolist()
    cli.main(["generate", "--run", str(char_run), "--prompt", "JULIET: ", "--max-new-tokens", "50",
              "--seed", "1"])
    assert capsys.readouterr().out == tokenizer.decode(expected) + "\n"  # 50 > block_size: windows slide


def test_unknown_character_is_one_clear_line(char_run, capsys, only_my_commands):
    assert cli.main(["generate", "--run", str(char_run), "--prompt", "ROMEO: Zounds!"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "'Z'" in err and err.count("\n") == 1


def test_text_repl(char_run):
    session, parts = session_for(char_run, "--max-new-tokens", "10", "--seed", "0")
    repl(session, scripted(["ROMEO:", "Zed", "", "quit"]))
    text = "".join(parts)
    assert text.startswith("ROMEO:") and "error: " in text and "'Z'" in text
    assert text.count("\n") >= 3  # two generations (one from an empty prompt) and the error
