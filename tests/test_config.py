"""Config loading: every key typed, unknown keys suggested, --set overrides validated."""
from __future__ import annotations

from pathlib import Path

import pytest

from gptdecoder.config import Config, config_from_dict, load_config, resolve_task
from gptdecoder.model import GPTConfig
from gptdecoder.errors import UserError
from conftest import ROOT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_default_config_loads_and_resolves():
    config = load_config(ROOT / "config.yaml")
    assert isinstance(config, Config) and isinstance(config.model, GPTConfig)  # one schema for the model
    assert config.task.name == "sort"
    assert config.model.block_size is None and config.model.vocab_size is None  # as written: left out
    resolved = resolve_task(config)
    assert resolved.model.block_size == 11 and resolved.model.vocab_size == 3  # 6 digits + 6 sorted - 1
    assert config.model.block_size is None  # resolving returns a new config; the loaded one is unchanged
    assert config.output.dir == str(Path("runs") / "config")


def test_empty_config_is_an_error(tmp_path):
    with pytest.raises(UserError, match=r"c\.yaml is empty"):
        load_config(write(tmp_path, ""))
    with pytest.raises(UserError, match="is empty"):
        load_config(write(tmp_path, "# only a comment\n"))


@pytest.mark.parametrize(
    "field, value",
    [("vocab_size", 0), ("block_size", -1), ("n_layer", 1.5), ("n_head", 0), ("d_model", True),
     ("mlp_ratio", 0), ("dropout", 1.0), ("dropout", "0.1"), ("bias", 1), ("tie_weights", "yes"),
     ("activation", "swish")],
)
def test_model_errors_name_the_key_and_value(field, value):
    with pytest.raises(UserError, match=f"model.{field}="):
        config_from_dict({"model": {"n_layer": 1, "n_head": 1, "d_model": 8, field: value}})


def test_vocab_size_from_the_data_may_be_padded_not_cut():
    config = load_config(ROOT / "config.yaml", ["model.vocab_size=8"])
    assert resolve_task(config).model.vocab_size == 8
    with pytest.raises(UserError, match="vocab_size=2 is smaller than the 3 tokens"):
        load_config(ROOT / "config.yaml", ["model.vocab_size=2"])


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "tasks").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_task_config_is_valid(path):
    load_config(path)


def test_unknown_key_suggests(tmp_path):
    with pytest.raises(UserError, match=r"train\.max_iter .*did you mean 'max_iters'"):
        load_config(write(tmp_path, "train: {max_iter: 5}"))
    with pytest.raises(UserError, match="did you mean 'train'"):
        load_config(write(tmp_path, "trian: {max_iters: 5}"))
    with pytest.raises(UserError, match="did you mean 'length'"):
        load_config(write(tmp_path, "task: {name: sort, params: {lenght: 5}}"))


def test_wrong_type_names_key_value_and_type(tmp_path):
    with pytest.raises(UserError, match=r"train\.max_iters='many': expected int, got str"):
        load_config(write(tmp_path, "train: {max_iters: many}"))
    with pytest.raises(UserError, match=r"model\.bias=3: expected bool"):
        load_config(write(tmp_path, "model: {bias: 3}"))
    with pytest.raises(UserError, match=r"task\.params\.length=1\.5: expected int"):
        load_config(write(tmp_path, "task: {name: sort, params: {length: 1.5}}"))


def test_set_overrides_are_parsed_as_yaml_and_validated(tmp_path):
    config = load_config(ROOT / "config.yaml", ["train.max_iters=500", "train.lr=1e-3", "task.params.length=8"])
    assert config.train.max_iters == 500 and config.train.lr == 0.001
    assert config.task.params["length"] == 8 and resolve_task(config).model.block_size == 15
    with pytest.raises(UserError, match=r"train\.max_iters='x'"):
        load_config(ROOT / "config.yaml", ["train.max_iters=x"])
    with pytest.raises(UserError, match="expected section.key=value"):
        load_config(ROOT / "config.yaml", ["train.max_iters"])
    with pytest.raises(UserError, match="did you mean 'batch_size'"):
        load_config(ROOT / "config.yaml", ["train.batchsize=4"])


def test_impossible_model_is_rejected(tmp_path):
    with pytest.raises(UserError, match=r"block_size=8 is too short .* >= 11"):
        load_config(ROOT / "config.yaml", ["model.block_size=8"])
    with pytest.raises(UserError, match="not divisible"):
        load_config(ROOT / "config.yaml", ["model.d_model=30", "model.n_head=4"])
    with pytest.raises(UserError, match="precision"):
        load_config(ROOT / "config.yaml", ["train.precision=fp8"])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(UserError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(write(tmp_path, "train: {max_iters: [}"))


def test_round_trip_through_a_dict():
    config = load_config(ROOT / "config.yaml")
    assert config_from_dict(config.to_dict()) == config


def test_task_params_are_converted_to_their_types(tmp_path):
    config = load_config(ROOT / "config.yaml", ["task.params.repeat_boost=1e-1"])
    assert config.task.params["repeat_boost"] == 0.1  # YAML 1.1 reads 1e-1 as a string
    config = load_config(ROOT / "config.yaml", ["task.params.repeat_boost=5"])
    assert isinstance(config.task.params["repeat_boost"], float)


def test_set_fills_an_empty_section(tmp_path):
    config = load_config(write(tmp_path, "model: {n_layer: 1, n_head: 1, d_model: 8}\ntask:\n"), ["task.name=reverse"])
    assert config.task.name == "reverse"
