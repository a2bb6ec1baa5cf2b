"""``python -m gptdecoder export``: transformers loads model and tokenizer offline, same greedy text."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

from conftest import tiny_model
from gptdecoder import cli
from gptdecoder.commands import export
from lab_runs import train_text_run, write_run

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")


@pytest.fixture(autouse=True)
def quiet_and_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(cli, "COMMANDS", {k: cli.COMMANDS[k] for k in ("generate", "export")})
    transformers.logging.set_verbosity_error()


def hf_greedy(out: Path, ids: list[int], n: int) -> list[int]:
    model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        generated = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=n, pad_token_id=0)
    return generated[0, len(ids):].tolist()


@pytest.fixture
def reverse_run(tmp_path) -> Path:
    params = {"length": 4, "num_digits": 5}
    model = tiny_model(vocab_size=6, block_size=9, embedding_scale=25)  # digits 0-4 and "="
    return write_run(tmp_path / "reverse", model, {"task": {"name": "reverse", "params": params}})


def test_task_run_round_trips_through_transformers(reverse_run, tmp_path, capsys):
    out = tmp_path / "hf"
    assert cli.main(["export", "--run", str(reverse_run), "--hf", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    ids = tokenizer("3 1 4 0 =")["input_ids"]
    assert ids == [3, 1, 4, 0, 5]
    from gptdecoder.runs import load_run

    ours = load_run(reverse_run).model.generate(torch.tensor([ids]), 4, do_sample=False)[0, 5:].tolist()
    theirs = hf_greedy(out, ids, 4)
    assert theirs == ours
    assert tokenizer.decode(theirs) == " ".join(str(t) if t < 5 else "=" for t in ours)


def test_export_replaces_a_previous_export(reverse_run, tmp_path):
    out = tmp_path / "hf"
    export.export_run(reverse_run, out)
    export.export_run(reverse_run, out)
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()


def test_push_without_token_fails_before_writing(reverse_run, tmp_path, capsys):
    out = tmp_path / "hf"
    assert cli.main(["export", "--run", str(reverse_run), "--hf", str(out), "--push", "me/model"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "HF_TOKEN" in err and err.count("\n") == 1
    assert not out.exists()


def test_push_uploads_the_folder(reverse_run, tmp_path, monkeypatch, capsys):
    calls = []

    class FakeApi:
        def __init__(self, token):
            calls.append(("token", token))

        def create_repo(self, repo, exist_ok):
            calls.append(("create", repo))
            return f"https://huggingface.co/{repo}"

        def upload_folder(self, folder_path, repo_id, commit_message):
            calls.append(("upload", sorted(p.name for p in Path(folder_path).iterdir()), repo_id))

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(HfApi=FakeApi))
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    out = tmp_path / "hf"
    assert cli.main(["export", "--run", str(reverse_run), "--hf", str(out), "--push", "me/model"]) == 0
    assert calls[0] == ("token", "hf_test") and calls[1] == ("create", "me/model")
    assert "config.json" in calls[2][1] and "model.safetensors" in calls[2][1]
    assert "https://huggingface.co/me/model" in capsys.readouterr().out


@pytest.mark.parametrize("tokenizer", ["char", "bpe"])
def test_text_run_gives_the_same_greedy_text_in_transformers(tmp_path, tokenizer, capsys):
    run_dir = train_text_run(tmp_path, tokenizer, iters=20)
    out = tmp_path / "hf"
    assert cli.main(["export", "--run", str(run_dir), "--hf", str(out)]) == 0
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    prompt = "JULIET: ay"  # + 6 new tokens fits block_size 16 (HF cannot slide the window)
    ids = hf_tokenizer(prompt)["input_ids"]
    capsys.readouterr()
    cli.main(["generate", "--run", str(run_dir), "--prompt", prompt, "--temperature", "0", "--max-new-tokens", "6"])
    ours = capsys.readouterr().out
    theirs = hf_tokenizer.decode(ids + hf_greedy(out, ids, 6))
    assert ours == theirs + "\n"
    if tokenizer == "bpe":
        assert (out / "vocab.json").is_file() and (out / "merges.txt").is_file()
        assert hf_tokenizer.eos_token == "<|endoftext|>"


def test_task_export_encodes_any_text_with_an_unknown_token(reverse_run, tmp_path):
    out = tmp_path / "hf"
    export.export_run(reverse_run, out)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    unk = tokenizer.unk_token_id
    assert tokenizer.unk_token == "<unk>" and unk == 6  # one past the model's 6 symbols
    assert tokenizer("3 9 x =")["input_ids"] == [3, unk, unk, 5]
    model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert model.config.vocab_size == 7
    with torch.no_grad():  # the unknown id runs through the model like any other
        assert model(torch.tensor([[3, unk, 5]])).logits.shape == (1, 3, 7)
    assert hf_greedy(out, [unk, 1, 2, 0, 5], 4).count(unk) == 0  # suppressed in generation


def test_char_export_encodes_characters_the_corpus_never_had(tmp_path):
    run_dir = train_text_run(tmp_path, "char", iters=2)
    out = tmp_path / "hf"
    export.export_run(run_dir, out)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    ids = tokenizer("ROMEO: Z✓")["input_ids"]
    assert ids[-2:] == [tokenizer.unk_token_id] * 2  # 'Z' and '✓' are not in the play
    assert tokenizer.decode(ids[:-2]) == "ROMEO: "
