"""Config tests: every preset composes (and every model preset builds); typos fail at compose time."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from seqlab.config import ModelConfig, TrainerConfig, to_spec
from seqlab.models.seq2seq import Seq2Seq
from seqlab.runtime import CONF_DIR, short_dirname

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("one_thread")]

MODEL_PRESETS = sorted(p.stem for p in (Path(CONF_DIR) / "model").glob("*.yaml"))


SEQ2SEQ_PRESETS = ["rnn", "gru", "lstm", "rnn_attn", "gru_attn", "lstm_attn"]


def test_the_documented_model_presets_exist(compose_cfg):
    assert set(SEQ2SEQ_PRESETS) <= set(MODEL_PRESETS)
    for preset in SEQ2SEQ_PRESETS:
        assert isinstance(to_spec(compose_cfg([f"model={preset}"]).model), ModelConfig)


@pytest.mark.parametrize("preset", MODEL_PRESETS)
def test_model_preset_composes_and_builds(compose_cfg, preset):
    cfg = compose_cfg([f"model={preset}"])
    spec = to_spec(cfg.model)
    assert spec.name == preset
    if not isinstance(spec, ModelConfig):  # a preset for another task kind's network
        return
    net = Seq2Seq(spec, src_vocab_size=40, tgt_vocab_size=50)
    assert net.decoder.generator.out_features == 50
    assert (net.decoder.attention is None) == (spec.attention.value == "none")


@pytest.mark.parametrize("plain", ["rnn", "gru", "lstm"])
def test_attention_preset_is_one_line_from_its_twin(compose_cfg, plain):
    a = OmegaConf.to_container(compose_cfg([f"model={plain}"]).model)
    b = OmegaConf.to_container(compose_cfg([f"model={plain}_attn"]).model)
    differing = {k for k in a if a[k] != b[k]}
    assert differing == {"name", "attention"}
    assert str(a["attention"]).endswith("none") and not str(b["attention"]).endswith("none")


def test_misspelt_key_fails_at_compose_time(compose_cfg):
    with pytest.raises(ConfigCompositionException) as e:
        compose_cfg(["model.hiden_size=3"])
    assert "hiden_size" in str(e.value) or "hiden_size" in str(e.value.__cause__)


def test_misspelt_value_fails_at_compose_time(compose_cfg):
    with pytest.raises((ConfigCompositionException, ValidationError)) as e:
        compose_cfg(["model.cell=gur"])
    text = f"{e.value} {e.value.__cause__}"
    assert "gur" in text and "lstm" in text  # the bad value and the valid ones


@pytest.mark.parametrize("override", ["model.hidden_size=big", "trainer.max_steps=1.5", "model.attention=luong"])
def test_wrong_types_fail_at_compose_time(compose_cfg, override):
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose_cfg([override])


@pytest.mark.parametrize("group,good", [("model", "lstm_attn"), ("task", "translation"), ("trainer", "debug")])
def test_unknown_choice_lists_the_choices(compose_cfg, group, good):
    with pytest.raises(MissingConfigException) as e:
        compose_cfg([f"{group}=foo"])
    msg = str(e.value)
    assert f"{group}/foo" in msg and good in msg


def test_trainer_debug_is_small(compose_cfg):
    cfg = compose_cfg(["trainer=debug"])
    t = to_spec(cfg.trainer)
    assert isinstance(t, TrainerConfig)
    assert 0 < t.max_steps <= 20 and t.max_epochs == 1
    assert t.limit_train and t.limit_eval


def test_default_run_composes(compose_cfg, tmp_path):
    cfg = compose_cfg()
    assert cfg.task.name == "translation" and cfg.model.name == "lstm_attn"
    assert cfg.cache_dir == str(tmp_path / "cache")
    # bundled data resolves to files that exist, both directions
    for split in ("train", "val", "test"):
        assert Path(cfg.data[split].src).is_file() and Path(cfg.data[split].tgt).is_file()
    rev = compose_cfg(["data.src_lang=en", "data.tgt_lang=de"])
    assert rev.data.train.src.endswith(".en.gz") and Path(rev.data.train.src).is_file()


# The translation data presets; other task kinds test their own data/task presets with their task.
FOUNDATION = {"data": ["multi30k", "multi30k_raw", "hub", "parallel_files", "table_files"],
              "task": ["translation"]}


@pytest.mark.parametrize("group", ["data", "optimizer", "scheduler", "trainer", "logger", "task"])
def test_every_preset_of_every_group_composes(compose_cfg, group):
    presets = FOUNDATION.get(group) or sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))
    for preset in presets:
        cfg = compose_cfg([f"{group}={preset}"])
        assert group in cfg, preset


def test_eval_and_predict_configs_compose(compose_cfg):
    from seqlab.config import decode_settings

    ev = compose_cfg(["ckpt_path=x.pt", "split=test", "decode.strategy=beam"], config_name="eval")
    assert ev.split == "test" and decode_settings(ev.decode)["beam_size"] == 5  # unset: 5
    assert compose_cfg(["ckpt_path=x.pt", "data.split=test"], config_name="eval").split == "test"
    for overrides, strategy, beam in [([], "greedy", 5), (["decode.beam_size=4"], "beam", 4),
                                      (["decode.beam_size=1"], "greedy", 1),
                                      (["decode.strategy=greedy", "decode.beam_size=4"], "greedy", 4),
                                      (["decode.strategy=sample"], "sample", 5)]:
        decode = decode_settings(compose_cfg(["ckpt_path=x.pt", *overrides], config_name="eval").decode)
        assert (decode["strategy"], decode["beam_size"]) == (strategy, beam), overrides
    pr = compose_cfg(["ckpt_path=x.pt", "input=-"], config_name="predict")
    assert pr.input == "-" and pr.attention_dir is None


def test_sweep_job_directory_names_stay_short_and_unique():
    assert short_dirname("model=gru,trainer=debug") == "model=gru,trainer=debug"
    long_a = ",".join(f"trainer.key_{i}=value_{i}" for i in range(30)) + ",model=gru"
    long_b = long_a.replace("model=gru", "model=lstm")
    a, b = short_dirname(long_a), short_dirname(long_b)
    assert len(a.encode()) <= 120 and len(b.encode()) <= 120
    assert a != b and a.startswith("trainer.key_0=value_0")
    assert len(short_dirname("ä" * 200).encode()) <= 120  # cut on bytes, not mid-character
    assert short_dirname("ckpt_path=runs/a/best.pt") == "ckpt_path=runs_a_best.pt"  # one directory
