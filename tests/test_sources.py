"""Bring your own model: run directories, Hugging Face GPT-2 directories and nanoGPT checkpoints.

``gptdecoder.runs.load_model`` tells the three apart by what is on disk. The nanoGPT
checkpoints here are written by the tests in nanoGPT's own format (its parameter names,
``model_args``, an AdamW state, ``torch.compile``'s ``_orig_mod.`` prefix, the causal-mask
buffers of older versions) and checked against the same weights in transformers'
GPT2LMHeadModel, an implementation we did not write. No network: every file is made here.
"""
from __future__ import annotations

import os
import pickle
import shlex
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch
from conftest import tiny_hf_model, tiny_model
from lab_runs import TINY_TASK, write_untrained_run

from gptdecoder import cli, hf
from gptdecoder.data.tokenizers import CharTokenizer
from gptdecoder.errors import UserError
from gptdecoder.runs import GPT2_VOCAB_SIZE, load_model

transformers = pytest.importorskip("transformers")

# our model beside tiny_hf_model's: the same shape, and weights well away from their init
# (larger than 0.02, biases not 0, LayerNorm gains not 1), so a mix-up changes the outputs
OURS = dict(block_size=24, noise=0.1)
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


@pytest.fixture
def run_cli(capsys):
    """``run_cli(*argv)`` -> (exit code, stdout, stderr) of ``python -m gptdecoder ARGV``, in process."""
    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()  # drop anything printed before
        code = cli.main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def one_line_error(err: str, *fragments: str) -> None:
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


# -- nanoGPT checkpoints, written in nanoGPT's format ----------------------------------------------


def nanogpt_weights(n_layer: int, n_embd: int, block_size: int, vocab_size: int, bias: bool,
                    seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with nanoGPT's names and nn.Linear (out, in) layouts, random enough that
    a transposed or swapped tensor changes the logits; lm_head.weight *is* wte (tied)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 0.2, around: float = 0.0) -> torch.Tensor:
        return around + scale * torch.randn(*shape, generator=g)

    C = n_embd
    wte = rand(vocab_size, C)
    sd = {"transformer.wte.weight": wte, "transformer.wpe.weight": rand(block_size, C)}
    for i in range(n_layer):
        h = f"transformer.h.{i}."
        layers = {"ln_1": (C,), "attn.c_attn": (3 * C, C), "attn.c_proj": (C, C), "ln_2": (C,),
                  "mlp.c_fc": (4 * C, C), "mlp.c_proj": (C, 4 * C)}
        for name, shape in layers.items():
            is_norm = name.startswith("ln")
            sd[h + name + ".weight"] = rand(*shape, scale=0.1, around=1.0) if is_norm else rand(*shape)
            if bias:
                sd[h + name + ".bias"] = rand(shape[0], scale=0.1)
    sd["transformer.ln_f.weight"] = rand(C, scale=0.1, around=1.0)
    if bias:
        sd["transformer.ln_f.bias"] = rand(C, scale=0.1)
    sd["lm_head.weight"] = wte  # one tensor under two names, as nanoGPT's tied state_dict()
    return sd


def nanogpt_checkpoint(bias: bool = True, compiled: bool = False, mask_buffers: bool = False, n_layer: int = 2,
                       n_head: int = 2, n_embd: int = 16, block_size: int = 16, vocab_size: int = 11,
                       seed: int = 0, dataset: str = "shakespeare_char") -> dict:
    """The dict nanoGPT's train.py saves as ckpt.pt: model, optimizer, model_args, iter_num,
    best_val_loss (a tensor) and config (plain values)."""
    model_args = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, bias=bias,
                      vocab_size=vocab_size, dropout=0.1)
    sd = nanogpt_weights(n_layer, n_embd, block_size, vocab_size, bias, seed)
    if mask_buffers:  # nanoGPT without flash attention registers the causal mask as a buffer named bias
        for i in range(n_layer):
            sd[f"transformer.h.{i}.attn.bias"] = torch.tril(torch.ones(block_size, block_size)).view(
                1, 1, block_size, block_size)
    params = [t for n, t in sd.items() if n != "lm_head.weight" and not n.endswith(".attn.bias")]
    params = [p.clone().requires_grad_() for p in params]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    sum((p * p).sum() for p in params).backward()
    optimizer.step()  # a real AdamW state: step counts, exp_avg, exp_avg_sq, param_groups
    if compiled:
        sd = {"_orig_mod." + name: tensor for name, tensor in sd.items()}
    config = {"out_dir": "out", "dataset": dataset, "batch_size": 12, "learning_rate": 6e-4, "compile": compiled,
              "wandb_log": False, "bias": bias}
    return {"model": sd, "optimizer": optimizer.state_dict(), "model_args": model_args, "iter_num": 250,
            "best_val_loss": torch.tensor(1.4697), "config": config}


def write_nanogpt(path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(nanogpt_checkpoint(**kwargs), path)
    return path


def transformers_twin(checkpoint: dict) -> "transformers.GPT2LMHeadModel":
    """transformers' GPT2LMHeadModel holding the same weights as a nanoGPT checkpoint.

    nanoGPT is GPT-2 with the exact GELU and optional biases: GPT-2's config with
    activation_function="gelu", biases set to zero when nanoGPT has none, and the Linear
    weights transposed into HF's Conv1D layout."""
    args = checkpoint["model_args"]
    config = transformers.GPT2Config(
        vocab_size=args["vocab_size"], n_positions=args["block_size"], n_embd=args["n_embd"],
        n_layer=args["n_layer"], n_head=args["n_head"], n_inner=4 * args["n_embd"], activation_function="gelu",
        layer_norm_epsilon=1e-5, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None,
        eos_token_id=None)
    model = transformers.GPT2LMHeadModel(config).eval()
    theirs = {name.removeprefix("_orig_mod."): t for name, t in checkpoint["model"].items()}
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in theirs:
                param.copy_(theirs[name].t() if name.endswith(CONV1D) else theirs[name])
            else:
                assert name.endswith(".bias") and not args["bias"], name
                param.zero_()
    return model


def logits_of(model, idx: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(idx)
    return out.logits if hasattr(out, "logits") else out[0]


@pytest.mark.parametrize("compiled", [False, True], ids=["plain", "orig_mod"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("mask_buffers", [False, True], ids=["no_buffers", "mask_buffers"])
def test_nanogpt_checkpoint_matches_transformers(tmp_path, bias, compiled, mask_buffers):
    path = write_nanogpt(tmp_path / "out" / "ckpt.pt", bias=bias, compiled=compiled, mask_buffers=mask_buffers)
    loaded = load_model(path)
    assert loaded.kind == "nanogpt" and loaded.task is None and loaded.config is None
    assert not loaded.model.training
    config = loaded.model.config
    assert (config.bias, config.activation, config.tie_weights, config.n_layer, config.d_model) == (
        bias, "gelu", True, 2, 16)
    twin = transformers_twin(torch.load(path, weights_only=True))
    idx = torch.randint(0, 11, (3, 16), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(logits_of(loaded.model, idx), logits_of(twin, idx), atol=1e-5, rtol=0)


def test_nanogpt_out_dir_opens_like_its_ckpt(tmp_path):
    path = write_nanogpt(tmp_path / "out-shakespeare-char" / "ckpt.pt")
    loaded = load_model(tmp_path / "out-shakespeare-char")
    assert loaded.kind == "nanogpt" and loaded.path == path
    assert loaded.description == f"nanoGPT checkpoint {path} (dataset shakespeare_char)"


def test_an_lm_head_that_differs_from_wte_loads_untied(tmp_path):
    checkpoint = nanogpt_checkpoint()
    checkpoint["model"]["lm_head.weight"] = checkpoint["model"]["lm_head.weight"].clone() * 0.5
    torch.save(checkpoint, tmp_path / "ckpt.pt")
    model = load_model(tmp_path / "ckpt.pt").model
    assert not model.config.tie_weights
    idx = torch.randint(0, 11, (2, 9))
    twin = transformers_twin(checkpoint)
    twin.config.tie_word_embeddings = False
    twin.lm_head.weight = torch.nn.Parameter(checkpoint["model"]["lm_head.weight"].clone())
    torch.testing.assert_close(logits_of(model, idx), logits_of(twin, idx), atol=1e-5, rtol=0)


def bad_checkpoint(change) -> dict:
    checkpoint = nanogpt_checkpoint()
    change(checkpoint)
    return checkpoint


@pytest.mark.parametrize("change, message", [
    (lambda c: c["model_args"].update(n_embd=32),
     "transformer.wte.weight has shape (11, 16), model_args imply (11, 32)"),
    (lambda c: c["model_args"].update(bias=False), "the weights do not fit model_args (bias=False): unexpected"),
    (lambda c: c["model_args"].update(n_layer=3), "missing transformer.h.2.attn.c_attn.bias"),
    (lambda c: c["model_args"].update(n_kv_head=1), "model_args has n_kv_head, which nanoGPT's GPT does not"),
    (lambda c: c["model_args"].update(n_head=3), "not divisible by model.n_head=3"),
    (lambda c: c["model_args"].update(block_size="16"), "model_args['block_size'] = '16': expected int"),
    (lambda c: c["model"].update({"transformer.h.0.attn.rotary.freqs": torch.ones(4)}),
     "unexpected transformer.h.0.attn.rotary.freqs"),
    (lambda c: c.update(model=[1, 2]), "'model' is not a state dict of tensors"),
    (lambda c: c["model"].update({"wte.weight": torch.ones(11, 16)}), "unexpected wte.weight"),
])
def test_a_nanogpt_checkpoint_that_does_not_fit_is_one_clear_line(tmp_path, change, message):
    torch.save(bad_checkpoint(change), tmp_path / "ckpt.pt")
    with pytest.raises(UserError) as raised:
        load_model(tmp_path / "ckpt.pt")
    assert message in str(raised.value) and "\n" not in str(raised.value)


class Payload:
    """Unpickling this runs code: what a malicious checkpoint would carry."""

    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path(__import__('os').environ['PWNED']).write_text('ran')",))


@pytest.fixture
def marker(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "pwned"
    monkeypatch.setenv("PWNED", str(path))
    return path


def test_a_crafted_pickle_as_a_nanogpt_checkpoint_is_refused_unrun(tmp_path, marker, run_cli):
    checkpoint = nanogpt_checkpoint()
    checkpoint["config"]["init_from"] = Payload()
    torch.save(checkpoint, tmp_path / "ckpt.pt")
    with pytest.raises(UserError, match=r"cannot read checkpoint .* safely: it refers to exec"):
        load_model(tmp_path / "ckpt.pt")
    for command in (["generate", "--prompt", "1 2"], ["inspect-masks"], ["ablate", "--out", str(tmp_path)]):
        code, out, err = run_cli(command[0], "--run", str(tmp_path / "ckpt.pt"), *command[1:])
        assert code == 2 and out == ""
        one_line_error(err, "cannot read checkpoint", "safely", "refers to exec", "could run code")
    assert not marker.exists()


def test_a_crafted_pytorch_model_bin_is_refused_unrun(tmp_path, marker, run_cli):
    from safetensors.torch import load_file

    directory = hf.save_pretrained(tiny_model(vocab_size=61, **OURS), tmp_path / "hf")
    state = load_file(str(directory / "model.safetensors"))
    state["extra"] = Payload()  # the older weights format is a pickle too
    torch.save(state, directory / "pytorch_model.bin")
    (directory / "model.safetensors").unlink()
    code, out, err = run_cli("generate", "--run", str(directory), "--prompt", "1 2")
    assert code == 2 and not marker.exists()
    one_line_error(err, "pytorch_model.bin", "safely", "refers to exec")


# -- what load_model recognises ----------------------------------------------------------------------


def test_a_run_directory_and_its_checkpoint_file_open_alike(tmp_path):
    run_dir = write_untrained_run(tmp_path / "run")
    by_dir, by_file = load_model(run_dir), load_model(run_dir / "ckpt.pt")
    for loaded in (by_dir, by_file):
        assert loaded.kind == "run" and loaded.path == run_dir and loaded.task.name == "sort"
        assert loaded.config.task.name == "sort" and loaded.tokenizer is None
        assert loaded.description == f"trained run {run_dir}"
    idx = torch.tensor([[0, 1, 2, 1]])
    torch.testing.assert_close(logits_of(by_dir.model, idx), logits_of(by_file.model, idx), atol=0, rtol=0)


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "does not exist: expected a run directory, a Hugging Face GPT-2 directory or a nanoGPT ckpt.pt"),
    (lambda p: p.mkdir(), "has neither ckpt.pt (a run directory, or nanoGPT's out_dir) nor config.json"),
    (lambda p: torch.save({"state_dict": {}}, p), "is neither a gptdecoder checkpoint"),
    (lambda p: p.write_text("not a checkpoint"), "cannot read checkpoint"),
])
def test_what_is_not_a_model_is_one_clear_line(tmp_path, setup, message, run_cli):
    path = tmp_path / "thing"
    setup(path)
    code, out, err = run_cli("generate", "--run", str(path))
    assert code == 2
    one_line_error(err, message)


# -- Hugging Face directories ------------------------------------------------------------------------


def gpt2_vocabulary_files(directory: Path) -> None:
    """GPT-2's encoder.json / vocab.bpe under the names a Hugging Face directory gives them."""
    from bpe.encoder import gpt2_vocabulary_dir

    shutil.copyfile(gpt2_vocabulary_dir() / "encoder.json", directory / "vocab.json")
    shutil.copyfile(gpt2_vocabulary_dir() / "vocab.bpe", directory / "merges.txt")


@pytest.mark.parametrize("writer", ["transformers", "gptdecoder"])
def test_a_hugging_face_directory_opens_with_the_same_logits(tmp_path, writer):
    if writer == "transformers":
        reference = tiny_hf_model()
        reference.save_pretrained(tmp_path / "hf")
    else:
        reference = tiny_model(vocab_size=61, **OURS)
        hf.save_pretrained(reference, tmp_path / "hf")
    loaded = load_model(tmp_path / "hf")
    assert loaded.kind == "hf" and loaded.task is None and not loaded.model.training
    assert loaded.tokenizer is None and "no vocab.json + merges.txt" in loaded.no_tokenizer
    idx = torch.randint(0, 61, (2, 24))
    torch.testing.assert_close(logits_of(loaded.model, idx), logits_of(reference, idx), atol=1e-5, rtol=0)


def test_a_hugging_face_directory_reads_gpt2_bpe_from_vocab_json_and_merges_txt(tmp_path, run_cli):
    tiny_hf_model(vocab_size=GPT2_VOCAB_SIZE).save_pretrained(tmp_path / "hf")
    gpt2_vocabulary_files(tmp_path / "hf")
    tokenizer = load_model(tmp_path / "hf").tokenizer
    reference = transformers.GPT2Tokenizer(str(tmp_path / "hf" / "vocab.json"), str(tmp_path / "hf" / "merges.txt"))
    text = "Hello world, ünïcode and   spaces\n"
    assert tokenizer.encode(text) == reference.encode(text) and tokenizer.encode("Hello world") == [15496, 995]
    assert tokenizer.decode(tokenizer.encode(text)) == text
    code, out, err = run_cli("generate", "--run", str(tmp_path / "hf"), "--prompt", "Hello", "--max-new-tokens", "5",
                             "--seed", "0")
    assert code == 0, err
    assert out.startswith("Hello") and out.endswith("\n") and len(out) > len("Hello\n")


def test_generate_on_a_hugging_face_directory_without_tokenizer_files_uses_token_ids(tmp_path, run_cli):
    reference = tiny_hf_model()
    reference.save_pretrained(tmp_path / "hf")
    code, out, err = run_cli("generate", "--run", str(tmp_path / "hf"), "--prompt", "5 7 9", "--max-new-tokens", "4",
                             "--temperature", "0")
    assert code == 0, err
    greedy = reference.generate(torch.tensor([[5, 7, 9]]), max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert out == "5 7 9 -> " + " ".join(str(t) for t in greedy[0, 3:].tolist()) + "\n"
    code, _, err = run_cli("generate", "--run", str(tmp_path / "hf"))
    assert code == 2
    one_line_error(err, "has no tokenizer (the directory has no vocab.json + merges.txt, GPT-2's BPE files)",
                   "give the prompt as token ids")


@pytest.fixture(scope="module")
def learned_bpe_dir(tmp_path_factory) -> Path:
    """A Hugging Face directory written by gptdecoder: a 300-token BPE learned here, and a model."""
    import bpe

    directory = tmp_path_factory.mktemp("hf_bpe") / "hf"
    vocab = directory.parent / "vocab"
    text = "".join(f"the cat number {i} sat on the mat; the dog {i * 7} slept by a log.\n" for i in range(200))
    bpe.train(text, 300, out_dir=vocab)
    hf.save_pretrained(tiny_model(vocab_size=300, **OURS), directory)
    shutil.copyfile(vocab / "encoder.json", directory / "vocab.json")
    shutil.copyfile(vocab / "vocab.bpe", directory / "merges.txt")
    return directory


def test_generate_on_a_hugging_face_directory_decodes_text(learned_bpe_dir, run_cli):
    loaded = load_model(learned_bpe_dir)
    ids = loaded.tokenizer.encode("the cat")
    expected = loaded.model.generate(torch.tensor([ids]), 30, temperature=0.8, top_k=200, seed=3)[0].tolist()
    code, out, err = run_cli("generate", "--run", str(learned_bpe_dir), "--prompt", "the cat",
                             "--max-new-tokens", "30", "--seed", "3")
    assert code == 0, err
    assert out == loaded.tokenizer.decode(expected) + "\n"  # 30 > block_size 24: the window slides


def test_a_tokenizer_larger_than_the_model_is_one_clear_line(tmp_path, run_cli):
    tiny_hf_model().save_pretrained(tmp_path / "hf")
    gpt2_vocabulary_files(tmp_path / "hf")
    code, _, err = run_cli("generate", "--run", str(tmp_path / "hf"), "--prompt", "Hello")
    assert code == 2
    one_line_error(err, "the tokenizer has 50257 tokens but the model only 61")


# -- generate on nanoGPT checkpoints ---------------------------------------------------------------


def test_generate_on_a_gpt2_vocabulary_nanogpt_never_picks_a_padding_id(tmp_path, run_cli):
    """nanoGPT pads GPT-2's 50257 tokens to 50304 rows; those 47 ids decode to nothing."""
    checkpoint = nanogpt_checkpoint(vocab_size=50304, n_embd=16, block_size=32)
    with torch.no_grad():
        checkpoint["model"]["transformer.wte.weight"][GPT2_VOCAB_SIZE:] *= 100  # the padding rows win argmax
    torch.save(checkpoint, tmp_path / "ckpt.pt")
    loaded = load_model(tmp_path / "ckpt.pt")
    ids = loaded.tokenizer.encode("Hello")
    assert ids == [15496]
    assert int(logits_of(loaded.model, torch.tensor([ids]))[0, -1].argmax()) >= GPT2_VOCAB_SIZE
    code, out, err = run_cli("generate", "--run", str(tmp_path / "ckpt.pt"), "--prompt", "Hello",
                             "--max-new-tokens", "12", "--temperature", "0")
    assert code == 0, err
    assert out.startswith("Hello") and out.endswith("\n")
    greedy = list(ids)
    with torch.no_grad():
        for _ in range(12):
            greedy.append(int(logits_of(loaded.model, torch.tensor([greedy]))[0, -1, :GPT2_VOCAB_SIZE].argmax()))
    assert out == loaded.tokenizer.decode(greedy) + "\n"


@pytest.fixture
def char_nanogpt(tmp_path) -> Path:
    return write_nanogpt(tmp_path / "out-shakespeare-char" / "ckpt.pt", vocab_size=65, block_size=16)


def test_generate_on_a_char_nanogpt_takes_and_prints_token_ids(char_nanogpt, run_cli):
    model = load_model(char_nanogpt).model
    code, out, err = run_cli("generate", "--run", str(char_nanogpt), "--prompt", "1 2 3", "--max-new-tokens", "20",
                             "--temperature", "0")
    assert code == 0, err
    prompt, _, answer = out.rstrip("\n").partition(" -> ")
    expected = model.generate(torch.tensor([[1, 2, 3]]), 20, do_sample=False)[0, 3:].tolist()
    assert prompt == "1 2 3" and [int(t) for t in answer.split()] == expected  # 23 > block_size: slides


@pytest.mark.parametrize("prompt, message", [
    ("", "has no tokenizer (its 65-token vocabulary is not GPT-2's, and there is no meta.pkl (nanoGPT's character "
         "vocabulary) at "),
    ("to be", "'to' is not a token id: this model has no tokenizer (its 65-token vocabulary is not GPT-2's, and "
              "there is no meta.pkl"),
    ("1 65", "token id 65 is beyond the model's vocabulary (ids 0..64)"),
])
def test_a_char_nanogpt_without_meta_pkl_says_it_needs_token_ids(char_nanogpt, prompt, message, run_cli):
    code, out, err = run_cli("generate", "--run", str(char_nanogpt), "--prompt", prompt)
    assert code == 2
    one_line_error(err, message)
    if not prompt:
        one_line_error(err, str(char_nanogpt.parent / "meta.pkl"), "data/shakespeare_char/meta.pkl",
                       "--meta PATH names one")


# -- meta.pkl: a nanoGPT character model's vocabulary, read as plain values only -----------------------

SHAKESPEARE_CHARS = "\n !$&',-.3:;?" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + "abcdefghijklmnopqrstuvwxyz"  # 65


def char_meta(chars: str = SHAKESPEARE_CHARS) -> dict:
    """What nanoGPT's data/shakespeare_char/prepare.py pickles into meta.pkl."""
    return {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": {c: i for i, c in enumerate(chars)}}


def write_meta(path: Path, meta, protocol: int = pickle.DEFAULT_PROTOCOL) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(meta, protocol=protocol))
    return path


@pytest.mark.parametrize("layout", ["out_dir", "data_dir"])
@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_a_char_nanogpt_reads_meta_pkl_in_either_layout(char_nanogpt, layout, protocol):
    """Beside the checkpoint, or nanoGPT's own layout: out-shakespeare-char/ckpt.pt and
    data/shakespeare_char/meta.pkl in the same repository."""
    where = (char_nanogpt.parent if layout == "out_dir" else char_nanogpt.parent.parent / "data" / "shakespeare_char")
    write_meta(where / "meta.pkl", char_meta(), protocol)
    for source in (char_nanogpt, char_nanogpt.parent):  # the checkpoint or its out_dir
        loaded = load_model(source)
        assert isinstance(loaded.tokenizer, CharTokenizer) and loaded.tokenizer.chars == SHAKESPEARE_CHARS
        assert loaded.meta_pkl.resolve() == (where / "meta.pkl").resolve() and loaded.no_tokenizer == ""
        assert loaded.tokenizer.encode("ROMEO:") == [SHAKESPEARE_CHARS.index(c) for c in "ROMEO:"]


def test_meta_pkl_beside_the_checkpoint_comes_first(char_nanogpt):
    write_meta(char_nanogpt.parent / "meta.pkl", char_meta())
    write_meta(char_nanogpt.parent.parent / "data" / "shakespeare_char" / "meta.pkl", b"not even a dict")
    assert load_model(char_nanogpt).tokenizer.chars == SHAKESPEARE_CHARS


def test_a_dataset_name_that_climbs_out_is_not_followed(tmp_path):
    ckpt = write_nanogpt(tmp_path / "repo" / "out" / "ckpt.pt", vocab_size=65, dataset="../../elsewhere")
    write_meta(tmp_path / "elsewhere" / "meta.pkl", char_meta())
    loaded = load_model(ckpt)
    assert loaded.meta_search == (ckpt.parent / "meta.pkl",) and loaded.tokenizer is None


def test_generate_on_a_char_nanogpt_prints_characters(char_nanogpt, run_cli):
    write_meta(char_nanogpt.parent.parent / "data" / "shakespeare_char" / "meta.pkl", char_meta())
    code, out, err = run_cli("generate", "--run", str(char_nanogpt), "--prompt", "ROMEO:", "--max-new-tokens", "20",
                             "--temperature", "0")
    assert code == 0, err
    model = load_model(char_nanogpt).model
    ids = [SHAKESPEARE_CHARS.index(c) for c in "ROMEO:"]
    greedy = model.generate(torch.tensor([ids]), 20, do_sample=False)[0, len(ids):].tolist()  # 26 > 16: slides
    assert out == "ROMEO:" + "".join(SHAKESPEARE_CHARS[i] for i in greedy) + "\n"
    code, out, err = run_cli("generate", "--run", str(char_nanogpt), "--max-new-tokens", "5", "--seed", "1")
    assert code == 0 and len(out) == 6 and set(out) <= set(SHAKESPEARE_CHARS), err  # no prompt: after a newline


def test_generate_reads_the_meta_pkl_it_is_given(char_nanogpt, tmp_path, run_cli):
    chars = SHAKESPEARE_CHARS[::-1]
    write_meta(char_nanogpt.parent / "meta.pkl", char_meta())  # --meta wins over the one found
    meta = write_meta(tmp_path / "elsewhere" / "meta.pkl", char_meta(chars))
    code, out, err = run_cli("generate", "--run", str(char_nanogpt), "--meta", str(meta), "--prompt", "ROMEO:",
                             "--max-new-tokens", "8", "--temperature", "0")
    assert code == 0, err
    ids = [chars.index(c) for c in "ROMEO:"]
    greedy = load_model(char_nanogpt).model.generate(torch.tensor([ids]), 8, do_sample=False)[0, 6:].tolist()
    assert out == "ROMEO:" + "".join(chars[i] for i in greedy) + "\n"


def test_a_meta_pkl_smaller_than_the_padded_vocabulary_never_samples_padding(tmp_path, run_cli):
    """nanoGPT may pad the vocabulary past meta.pkl's: the extra ids have no character."""
    checkpoint = nanogpt_checkpoint(vocab_size=80, block_size=32)
    with torch.no_grad():
        checkpoint["model"]["transformer.wte.weight"][65:] *= 100  # the padding rows win argmax
    ckpt = tmp_path / "out" / "ckpt.pt"
    ckpt.parent.mkdir()
    torch.save(checkpoint, ckpt)
    write_meta(ckpt.parent / "meta.pkl", char_meta())
    code, out, err = run_cli("generate", "--run", str(ckpt), "--prompt", "ROMEO:", "--max-new-tokens", "12",
                             "--temperature", "0")
    assert code == 0, err
    model = load_model(ckpt).model
    greedy = [SHAKESPEARE_CHARS.index(c) for c in "ROMEO:"]
    assert int(logits_of(model, torch.tensor([greedy]))[0, -1].argmax()) >= 65
    with torch.no_grad():
        for _ in range(12):
            greedy.append(int(logits_of(model, torch.tensor([greedy]))[0, -1, :65].argmax()))
    assert out == "".join(SHAKESPEARE_CHARS[i] for i in greedy) + "\n"


class System:
    """Unpickling this would run a shell command (here: one that leaves the file $PWNED)."""

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(os.environ['PWNED'])}",))


class Instance:
    def __init__(self):
        self.chars = SHAKESPEARE_CHARS


@pytest.mark.parametrize("hostile, protocol, message", [
    (lambda: {**char_meta(), "itos": System()}, 5, "it holds a global posix.system (opcode STACK_GLOBAL)"),
    (lambda: {**char_meta(), "itos": System()}, 0, "it holds a global posix.system (opcode GLOBAL)"),
    (lambda: {**char_meta(), "stoi": Payload()}, 4, "it holds a global builtins.exec"),
    (lambda: Instance(), 5, "it holds a global test_sources.Instance"),
    (lambda: Instance(), 0, "it holds a global copy_reg._reconstructor"),
])
@pytest.mark.parametrize("layout", ["out_dir", "data_dir", "--meta"])
def test_a_hostile_meta_pkl_is_refused_unrun(char_nanogpt, tmp_path, marker, hostile, protocol, message, layout,
                                             run_cli):
    if os.name != "posix":
        message = message.replace("posix.", f"{os.name}.")
    where = {"out_dir": char_nanogpt.parent, "data_dir": char_nanogpt.parent.parent / "data" / "shakespeare_char",
             "--meta": tmp_path / "elsewhere"}[layout]
    meta = write_meta(where / "meta.pkl", hostile(), protocol)
    extra = ["--meta", str(meta)] if layout == "--meta" else []
    code, out, err = run_cli("generate", "--run", str(char_nanogpt), *extra, "--prompt", "ROMEO:")
    assert code == 2 and out == "" and not marker.exists()
    one_line_error(err, f"nanoGPT vocabulary '{meta}' refused, unrun: ", message,
                   "only plain dicts, lists, tuples, strings, bytes, ints, floats, bools and None are read")


@pytest.mark.parametrize("data, message", [
    (pickle.dumps(char_meta())[:-9], "is not a readable pickle"),
    (b"vocab_size: 65\n", "is not a readable pickle"),
    (b"", "is empty, not a pickle"),
])
def test_a_meta_pkl_that_is_not_a_pickle_is_one_clear_line(char_nanogpt, data, message, run_cli):
    (char_nanogpt.parent / "meta.pkl").write_bytes(data)
    code, out, err = run_cli("generate", "--run", str(char_nanogpt), "--prompt", "ROMEO:")
    assert code == 2 and out == ""
    one_line_error(err, "nanoGPT vocabulary", message)


def deeply_nested_vocab_size(depth: int = 100_000) -> bytes:
    """A meta.pkl whose vocab_size is a list nested deeper than repr (or pickle.dumps) can go:
    written opcode by opcode (EMPTY_LIST depth times, then APPEND depth - 1 times)."""
    data = pickle.dumps(changed_meta(vocab_size=None), protocol=2)
    key = b"X\x0a\x00\x00\x00vocab_sizeq\x01"
    assert data.count(key + b"N") == 1
    return data.replace(key + b"N", key + b"]" * depth + b"a" * (depth - 1))


def changed_meta(**change) -> dict:
    return {**char_meta(), **change}


@pytest.mark.parametrize("meta, message", [
    (char_meta(SHAKESPEARE_CHARS + "~"), "has 66 characters but the model only 65 token ids"),
    (["\n", "a"], "is not nanoGPT's character vocabulary (a dict with vocab_size, itos and stoi)"),
    ({"itos": {0: "a"}, "stoi": {"a": 0}}, "is not nanoGPT's character vocabulary"),
    (changed_meta(vocab_size="65"), "vocab_size is '65', not a positive int"),
    (changed_meta(vocab_size=True), "vocab_size is True, not a positive int"),
    (changed_meta(itos=list(SHAKESPEARE_CHARS)), "itos and stoi must be dicts"),
    (changed_meta(itos={i: c for i, c in enumerate(SHAKESPEARE_CHARS) if i != 7}), "itos has 64 entries; it must "
     "map each id 0..64 (vocab_size 65) to a character"),
    (changed_meta(itos={**dict(enumerate(SHAKESPEARE_CHARS)), "7": "x"}), "itos has the key '7'"),
    (changed_meta(itos={**dict(enumerate(SHAKESPEARE_CHARS)), 3: "ab"}), "itos[3] is 'ab', not one character"),
    (changed_meta(itos={**dict(enumerate(SHAKESPEARE_CHARS)), 3: 36}), "itos[3] is 36, not one character"),
    (changed_meta(itos={**dict(enumerate(SHAKESPEARE_CHARS)), 3: "\ud800"}), "a lone surrogate"),
    (changed_meta(itos={**dict(enumerate(SHAKESPEARE_CHARS)), 3: "a"}), "itos maps both 3 and 39 to 'a'"),
    (changed_meta(stoi={**char_meta()["stoi"], "a": 40}), "stoi is not the inverse of itos (at 'a': stoi has 40, "
     "itos says 39)"),
    (changed_meta(stoi={**char_meta()["stoi"], "~": 3}), "stoi is not the inverse of itos (at '~'"),
    (changed_meta(stoi={**char_meta()["stoi"], "\n": False}), "stoi is not the inverse of itos (at '\\n'"),
    (deeply_nested_vocab_size(), "vocab_size is a list, not a positive int"),
    (changed_meta(itos={**dict(enumerate(SHAKESPEARE_CHARS)), 3: "x" * 10**6}), "itos[3] is 'xxxxxxxx"),
])
def test_a_meta_pkl_that_does_not_fit_the_model_is_one_clear_line(char_nanogpt, meta, message, run_cli):
    if isinstance(meta, bytes):  # written opcode by opcode
        (char_nanogpt.parent / "meta.pkl").write_bytes(meta)
    else:
        write_meta(char_nanogpt.parent / "meta.pkl", meta)
    code, out, err = run_cli("generate", "--run", str(char_nanogpt), "--prompt", "ROMEO:")
    assert code == 2 and out == ""
    one_line_error(err, f"nanoGPT vocabulary '{char_nanogpt.parent / 'meta.pkl'}'", message)
    assert len(err) < 300


def test_meta_is_for_nanogpt_checkpoints_and_must_exist(char_nanogpt, tmp_path, run_cli):
    run_dir = write_untrained_run(tmp_path / "run")
    meta = write_meta(tmp_path / "meta.pkl", char_meta())
    code, _, err = run_cli("generate", "--run", str(run_dir), "--meta", str(meta), "--prompt", "0 1")
    assert code == 2
    one_line_error(err, f"meta.pkl '{meta}' is nanoGPT's character vocabulary, but trained run {run_dir} is not a "
                   "nanoGPT checkpoint")
    code, _, err = run_cli("generate", "--run", str(char_nanogpt), "--meta", str(tmp_path / "none.pkl"))
    assert code == 2
    one_line_error(err, f"meta.pkl '{tmp_path / 'none.pkl'}' does not exist")


def test_commands_that_never_decode_do_not_read_meta_pkl(sources, task_config, run_cli):
    write_meta(sources["nanogpt"].parent / "meta.pkl", Instance())  # would be refused, if it were read
    code, out, err = run_cli("inspect-masks", "--run", str(sources["nanogpt"]), "-c", str(task_config))
    assert code == 0, out + err


# -- inspect-masks and ablate: a task for a model without one ----------------------------------------


@pytest.fixture
def task_config(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_TASK)
    return path


@pytest.fixture
def sources(tmp_path, char_nanogpt) -> dict[str, Path]:
    tiny_hf_model().save_pretrained(tmp_path / "hf")
    return {"nanogpt": char_nanogpt, "hf": tmp_path / "hf"}


@pytest.mark.parametrize("kind", ["nanogpt", "hf"])
def test_inspect_masks_takes_the_task_from_the_config_for_a_model_without_one(sources, task_config, kind, run_cli):
    code, out, err = run_cli("inspect-masks", "--run", str(sources[kind]), "-c", str(task_config), "--layer", "1")
    assert code == 0, out + err
    loaded = load_model(sources[kind])
    assert f"model: {loaded.description}, task from {task_config}" in out
    assert out.count("PASS") == 5 and "FAIL" not in out


@pytest.mark.parametrize("kind", ["nanogpt", "hf"])
def test_a_model_without_a_task_needs_c(sources, kind, run_cli):
    for command in (["inspect-masks"], ["ablate", "--out", "unused"]):
        code, _, err = run_cli(command[0], "--run", str(sources[kind]), *command[1:])
        assert code == 2
        one_line_error(err, "has no task: pass -c CONFIG")


def test_a_task_run_keeps_its_own_task(tmp_path, task_config, run_cli):
    run_dir = write_untrained_run(tmp_path / "run")  # trained (here: saved) from TINY_TASK
    code, out, err = run_cli("inspect-masks", "--run", str(run_dir), "-c", str(task_config))
    assert code == 0, out + err  # its own config: as README's `-c config.yaml --run runs/config`
    assert f"model: trained run {run_dir}\n" in out
    other = tmp_path / "other.yaml"
    other.write_text(TINY_TASK.replace("length: 4", "length: 5"))
    code, _, err = run_cli("inspect-masks", "--run", str(run_dir), "-c", str(other))
    assert code == 2
    one_line_error(err, "was trained on 'sort' (length=4, num_digits=3) but", "names 'sort' (length=5, num_digits=3): "
                   "leave out -c to use the run's own task")


@pytest.mark.parametrize("vocab_size, block_size, task_yaml, message", [
    (2, 16, TINY_TASK, "task 'sort' from {config} has 3 symbols but the model's vocabulary only 2 ids"),
    (65, 6, TINY_TASK, "task 'sort' from {config} needs a context of 7 tokens but the model's block_size is 6"),
    (65, 16, "task: {name: text}\nmodel: {block_size: 16}\n", "{config} trains on text: -c must name a task config"),
])
def test_the_task_must_fit_the_model(tmp_path, vocab_size, block_size, task_yaml, message, run_cli):
    ckpt = write_nanogpt(tmp_path / "ckpt.pt", vocab_size=vocab_size, block_size=block_size)
    config = tmp_path / "task.yaml"
    config.write_text(task_yaml)
    code, _, err = run_cli("inspect-masks", "--run", str(ckpt), "-c", str(config))
    assert code == 2
    one_line_error(err, message.format(config=config))


@pytest.mark.parametrize("kind", ["nanogpt", "hf"])
def test_ablate_a_model_without_a_task(sources, task_config, tmp_path, kind, run_cli):
    out_dir = tmp_path / f"ablation_{kind}"
    code, out, err = run_cli("ablate", "--run", str(sources[kind]), "-c", str(task_config), "--examples", "20",
                             "--out", str(out_dir))
    assert code == 0, err
    assert "| layer | head | accuracy | drop |" in out
    assert {p.name for p in out_dir.iterdir()} == {"ablation_zero.md", "ablation_zero.csv", "ablation_zero.png"}
    model_dir = sources[kind] if kind == "hf" else sources[kind].parent
    assert not any(p.name.startswith("ablation") for p in model_dir.iterdir())


def test_ablate_writes_into_a_foreign_model_directory_only_when_told(sources, task_config, run_cli):
    code, _, err = run_cli("ablate", "--run", str(sources["hf"]), "-c", str(task_config))
    assert code == 2
    one_line_error(err, "pass --out DIR")


@pytest.mark.parametrize("kind", ["nanogpt", "hf"])
def test_pictures_and_the_viewer_for_a_model_without_a_task(sources, task_config, kind, run_cli, tmp_path):
    out = tmp_path / "pictures"
    code, printed, err = run_cli("pictures", "--run", str(sources[kind]), "-c", str(task_config), "--out", str(out),
                                 "--html")
    assert code == 0, printed + err
    assert (out / "attention_all_heads.png").is_file() and (out / "attention_viewer.html").is_file()
    code, _, err = run_cli("pictures", "--run", str(sources[kind]), "--out", str(out))
    assert code == 2 and "-c CONFIG" in err and err.count("\n") == 1
