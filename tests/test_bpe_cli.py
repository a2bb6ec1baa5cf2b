"""End-to-end tests of ``python -m bpe`` in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HANG_TIMEOUT

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "bpe", *args],
        input=stdin, capture_output=True, text=True, cwd=ROOT, env=env, timeout=HANG_TIMEOUT,
    )


def test_encode_argument_and_stdin():
    assert run("encode", "Hello world").stdout.split() == ["15496", "995"]
    result = run("encode", "--json", "--file", "-", stdin="Hello world")
    assert json.loads(result.stdout) == [15496, 995]
    assert run("encode", stdin="Hello world").stdout.split() == ["15496", "995"]


def test_decode_and_tokens():
    assert run("decode", "15496", "995").stdout == "Hello world\n"
    assert run("decode", stdin="[15496, 995]").stdout == "Hello world\n"
    assert run("decode", "--tokens", "15496", "995").stdout.split() == ["Hello", "␣world"]


def test_explain():
    out = run("explain", " tokenization").stdout
    assert "Ġ + t -> Ġt" in out and "Ġtoken=11241" in out


def test_train_then_use(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("low lower lowest newer newest wider\n" * 50, encoding="utf-8")
    out = tmp_path / "vocab"
    result = run("train", "--input", str(corpus), "--vocab-size", "270", "--out", str(out))
    assert result.returncode == 0, result.stderr
    ids = run("encode", "--vocab", str(out), "lowest").stdout.split()
    assert run("decode", "--vocab", str(out), *ids).stdout == "lowest\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["decode", "99999"], "unknown token id 99999"),
        (["decode", "12", "x"], "integers"),
        (["encode", "<|endoftext|>"], "disallowed"),
        (["encode", "--vocab", "/no/such/dir", "hi"], "/no/such/dir"),
        (["encode", "--file", "/no/such/file.txt"], "/no/such/file.txt"),
        (["train", "--input", "/no/such/file.txt", "--vocab-size", "300", "--out", "x"], "file.txt"),
    ],
)
def test_errors_exit_2_with_one_line(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_bad_vocab_size_exits_2(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("abc")
    result = run("train", "--input", str(corpus), "--vocab-size", "100", "--out", str(tmp_path / "v"))
    assert result.returncode == 2 and "vocab_size" in result.stderr


@pytest.mark.parametrize("command", ["encode", "decode", "explain", "train"])
def test_help(command):
    result = run(command, "--help")
    assert result.returncode == 0 and "usage:" in result.stdout


def test_package_imports_no_torch_or_gptdecoder():
    code = "import sys, bpe; bpe.get_encoder(); print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'gptdecoder')))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                            timeout=HANG_TIMEOUT)
    assert result.stdout.strip() == "[]", result.stderr
