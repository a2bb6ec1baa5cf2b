"""Config loading: every key typed, unknown keys suggested, --set overrides validated."""
from __future__ import annotations

from pathlib import Path

import pytest

from gptdecoder.config import Config, config_from_dict, load_config
from gptdecoder.errors import UserError
from conftest import ROOT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_default_config_loads_and_resolves():
    config = load_config(ROOT / "config.yaml")
    assert isinstance(config, Config)
    assert config.task.name == "sort"
    assert config.model.block_size == 11  # 6 digits + 6 sorted - 1
    assert config.output.dir == str(Path("runs") / "config")


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
    assert config.task.params["length"] == 8 and config.model.block_size == 15
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
