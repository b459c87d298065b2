"""``precision=fast``: bf16 autocast only where the hardware runs it faster than fp32."""

from __future__ import annotations

import logging

import pytest
import torch

from seqlab import runtime
from seqlab.errors import ConfigError
from seqlab.runtime import autocast_dtype
from seqlab.tasks.sentiment import lm_pretrain_config

CPU = torch.device("cpu")


@pytest.fixture
def amx(monkeypatch):
    """``amx(True|False, speedup=0.6, avx512_bf16=True)``: pretend the CPU has (or lacks) AMX tiles,
    and, without them, runs bf16 products ``speedup`` times as fast as fp32 ones (0.6: the Intel
    VM without AMX that this project measured)."""

    def _set(present: bool, speedup: float = 0.6, avx512_bf16: bool = True):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: present, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
        monkeypatch.setattr(runtime, "bf16_matmul_speedup", lambda: speedup)
        runtime._warn_slow_bf16.cache_clear()

    yield _set
    runtime._warn_slow_bf16.cache_clear()


def test_fast_is_bf16_with_amx_and_fp32_without(amx):
    amx(True)
    assert runtime.bf16_is_fast(CPU)
    assert autocast_dtype("fast", CPU) == torch.bfloat16
    amx(False)
    assert not runtime.bf16_is_fast(CPU)
    assert autocast_dtype("fast", CPU) is None


def test_without_amx_fast_follows_the_measured_speed(amx):
    """AVX-512-BF16 without AMX: slow on the Intel VM measured (0.5-0.7x fp32), fast on the AMD
    EPYC one (2.3-4.4x); without AVX-512-BF16 bf16 is never picked, whatever the measurement."""
    amx(False, speedup=2.7)
    assert runtime.bf16_is_fast(CPU) and autocast_dtype("fast", CPU) == torch.bfloat16
    amx(False, speedup=1.1)
    assert not runtime.bf16_is_fast(CPU)
    amx(False, speedup=2.7, avx512_bf16=False)
    assert not runtime.bf16_is_fast(CPU) and autocast_dtype("fast", CPU) is None


def test_the_bf16_speed_is_measured_once():
    speedup = runtime.bf16_matmul_speedup()
    assert 0 < speedup < float("inf") and runtime.bf16_matmul_speedup() == speedup
    assert runtime.bf16_matmul_speedup.cache_info().hits >= 1


def test_precision_names(amx):
    amx(True)
    assert runtime.precision_name(autocast_dtype("fast", CPU)) == "bf16"
    amx(False)
    assert runtime.precision_name(autocast_dtype("fast", CPU)) == "fp32"
    assert runtime.precision_name(torch.float16) == "fp16"


def test_explicit_choices_are_kept(amx):
    amx(False)
    assert autocast_dtype("fp32", CPU) is None
    assert autocast_dtype("auto", CPU) is None
    assert autocast_dtype("bf16", CPU) == torch.bfloat16  # asked for: given, with a warning
    amx(True)
    assert autocast_dtype("fp32", CPU) is None  # fast hardware does not override an explicit fp32


def test_bf16_without_amx_warns_once(amx, caplog):
    amx(False)
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        autocast_dtype("bf16", CPU)
        autocast_dtype("bf16", CPU)
    warnings = [r for r in caplog.records if "no faster than fp32" in r.getMessage()]
    assert len(warnings) == 1 and "precision=fast" in warnings[0].getMessage()
    caplog.clear()
    amx(True)
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        autocast_dtype("bf16", CPU)
    assert not caplog.records


def test_unknown_precision_names_the_choices():
    with pytest.raises(ConfigError, match="fp8.*auto, fast, fp32, bf16, fp16"):
        autocast_dtype("fp8", CPU)


def test_trainer_precision_fast_composes(compose_cfg):
    cfg = compose_cfg(["trainer.precision=fast"])
    assert cfg.trainer.precision == "fast"
    with pytest.raises(Exception, match="precision"):
        compose_cfg(["trainer.precision=fastest"])


@pytest.mark.parametrize("preset", ["multi30k_de_en", "multi30k_en_de", "sst2", "ud_ewt_upos"])
def test_presets_train_in_the_fast_precision(compose_cfg, preset):
    """The presets' minutes were measured in bf16 on a CPU with AMX; on one without, bf16 would
    make them slower than fp32, so they ask for ``fast``."""
    cfg = compose_cfg([f"experiment={preset}"])
    assert cfg.trainer.precision == "fast"
    if cfg.task.get("lm_pretrain") and cfg.task.lm_pretrain.text:
        assert cfg.task.lm_pretrain.precision == "fast"


def test_lm_pretrain_precision_accepts_fast_and_names_the_choices():
    assert lm_pretrain_config({"text": ["imdb"], "precision": "fast"}).precision == "fast"
    with pytest.raises(ConfigError, match="task.lm_pretrain.precision='fp8': fp32, bf16 or fast"):
        lm_pretrain_config({"text": ["imdb"], "precision": "fp8"})
