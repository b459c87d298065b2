"""CLI subprocess tests: ``seqlab --help``, ``train --help``, train -> eval -> predict on one tiny
run (trained once per module), and a ``-m`` sweep with its summary table."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

TINY = [
    "model.emb_size=16", "model.hidden_size=32", "trainer=debug", "trainer.max_steps=3",
    "trainer.batch_size=8", "trainer.limit_train=64", "trainer.limit_eval=8", "trainer.num_threads=1",
    "trainer.progress_bar=false", "task.val_decode.max_len=8", "task.num_samples=1",
]
SENTENCE = "ein mann fährt fahrrad ."


def env_for(tmp) -> dict:
    """Like the ``cli_env`` fixture, for module-scoped fixtures: offline, private cache."""
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", SEQLAB_CACHE=str(tmp / "cache"),
               HYDRA_FULL_ERROR="0", PYTHONUNBUFFERED="1")
    return env


def seqlab(env, *args, stdin=None, timeout=240):
    # one intra-op thread: on a small shared machine, spinning thread pools cost more than they give
    env = {"OMP_NUM_THREADS": "1", **env}
    proc = subprocess.run([sys.executable, "-m", "seqlab", *map(str, args)], env=env, input=stdin,
                          capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One ``seqlab train`` run shared by the eval / predict tests."""
    root = tmp_path_factory.mktemp("cli")
    env = env_for(root)
    run_dir = root / "run"
    # no input feeding: the teacher-forced loss of eval runs in one pass over the 1014 sentences
    proc = ok(seqlab(env, "train", "model=gru_attn", "model.input_feeding=false", *TINY,
                     f"hydra.run.dir={run_dir}"))
    return {"dir": run_dir, "env": env, "proc": proc}


def test_help_lists_the_verbs(cli_env):
    proc = ok(seqlab(cli_env, "--help"))
    for verb in ("train", "eval", "predict"):
        assert verb in proc.stdout
    bad = seqlab(cli_env, "trian")
    assert bad.returncode != 0 and "unknown verb" in bad.stderr and "train" in bad.stderr


def test_train_help_shows_hydra_config_groups(cli_env):
    out = ok(seqlab(cli_env, "train", "--help")).stdout
    assert "Configuration groups" in out or "== Config groups ==" in out or "Compose your configuration" in out
    for group in ("model:", "task:", "trainer:", "data:"):
        assert group in out
    for choice in ("lstm_attn", "gru", "debug", "multi30k"):
        assert choice in out


def test_train_writes_the_run_directory(run):
    d = run["dir"]
    assert (d / "checkpoints" / "last.pt").is_file() and (d / "checkpoints" / "best.pt").is_file()
    assert list((d / "tb").glob("events.out.tfevents.*"))
    assert (d / ".hydra" / "config.yaml").is_file() and (d / ".hydra" / "overrides.yaml").is_file()
    summary = json.loads((d / "metrics.json").read_text())
    assert "val/bleu" in summary["metrics"] and summary["step"] == 3
    assert list((d / "attention").glob("*.png"))
    log = run["proc"].stderr
    assert str(d) in log and "best.pt" in log and "tensorboard --logdir" in log  # the closing summary
    assert "precision fp32 (auto)" in log  # what trainer.precision resolved to on this device


def test_eval_prints_metrics_and_writes_metrics_json(run, tmp_path):
    out_dir = tmp_path / "eval"
    proc = ok(seqlab(run["env"], "eval", f"ckpt_path={run['dir'] / 'checkpoints' / 'best.pt'}",
                     "decode.max_len=8", f"hydra.run.dir={out_dir}"))
    assert "val/bleu" in proc.stdout and "val/loss" in proc.stdout
    assert "nrefs:1" in proc.stdout  # the sacrebleu signature is printed
    result = json.loads((out_dir / "metrics.json").read_text())
    assert result["split"] == "val" and "val/bleu" in result["metrics"]
    assert result["decode"]["strategy"] == "greedy" and result["decode"]["beam_size"] == 5  # the defaults
    hyps = (out_dir / "val.hyp").read_text(encoding="utf-8")
    assert hyps.endswith("\n") and hyps.count("\n") == 1014  # the whole Multi30k validation set


def test_eval_in_bf16_casts_the_weights_once(run, tmp_path):
    """precision=bf16: the restored network itself is bf16 (one copy of the weights, not fp32 ones
    plus a bf16 decoding copy), and it decodes exactly as the bf16 copy of the fp32 network does."""
    import torch

    from seqlab.evaluate import restore_task
    from seqlab.models.search import decoding_copy
    from seqlab.training import checkpoint as ckpt_io

    best = run["dir"] / "checkpoints" / "best.pt"
    proc = ok(seqlab(run["env"], "eval", f"ckpt_path={best}", "precision=bf16", "decode.max_len=8",
                     f"hydra.run.dir={tmp_path / 'eval'}"))
    assert "val/bleu" in proc.stdout
    ckpt = ckpt_io.load(best)
    full, _ = restore_task(ckpt, with_data=False)
    half, _ = restore_task(ckpt, with_data=False, precision="bf16")
    assert {p.dtype for p in full.network.parameters()} == {torch.float32}
    assert {p.dtype for p in half.network.parameters()} == {torch.bfloat16}
    src = [SENTENCE.split(), "zwei hunde".split(), "eine frau mit einem hut".split()]
    device = next(half.network.parameters()).device.type  # restored onto the GPU where there is one
    with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16):
        assert decoding_copy(half.network, {}) is half.network
        for decode in ({"strategy": "greedy", "max_len": 8}, {"strategy": "beam", "beam_size": 3, "max_len": 8}):
            a, b = full.translate_tokens(src, decode), half.translate_tokens(src, decode)
            assert [t.tokens for t in a] == [t.tokens for t in b]
            assert [t.score for t in a] == [t.score for t in b]


@pytest.mark.parametrize("amx", [False, True])
def test_eval_precision_fast_follows_the_cpu(run, monkeypatch, amx):
    """precision=fast restores bf16 weights where the CPU has AMX, fp32 ones where it has not."""
    import torch

    from seqlab import runtime
    from seqlab.evaluate import restore_task
    from seqlab.training import checkpoint as ckpt_io

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(runtime, "bf16_matmul_speedup", lambda: 0.6)  # without AMX: the slow kind of CPU
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: amx)
    task, _ = restore_task(ckpt_io.load(run["dir"] / "checkpoints" / "best.pt"), with_data=False, precision="fast")
    assert runtime.bf16_is_fast(task.device) is amx
    assert {p.dtype for p in task.network.parameters()} == {torch.bfloat16 if amx else torch.float32}


def test_eval_as_the_user_journey_writes_it(run, tmp_path):
    """``seqlab eval ckpt_path=... data.split=test decode.beam_size=5`` (docs: USER-JOURNEYS 3):
    data.split picks the split as split does, and a beam size alone means beam search."""
    out_dir = tmp_path / "eval"
    proc = ok(seqlab(run["env"], "eval", f"ckpt_path={run['dir'] / 'checkpoints' / 'best.pt'}", "data.split=test",
                     "decode.beam_size=3", "decode.max_len=8", f"hydra.run.dir={out_dir}"))
    assert "test/bleu" in proc.stdout
    result = json.loads((out_dir / "metrics.json").read_text())
    assert result["split"] == "test" and (out_dir / "test.hyp").read_text(encoding="utf-8").count("\n") == 1000
    assert result["decode"]["strategy"] == "beam" and result["decode"]["beam_size"] == 3


def test_eval_on_your_own_test_files(run, tmp_path):
    """``data.test.src=my.de data.test.tgt=my.en`` evaluates on those files, read as the checkpoint's
    data was; a table path for plain-text data is refused, naming the keys."""
    import gzip

    from seqlab.config import asset_path

    lines = {side: gzip.open(asset_path(f"multi30k/tok/test_2016_flickr.lc.norm.tok.{side}.gz"), "rt").read()
             .splitlines()[:7] for side in ("de", "en")}
    for side, text in lines.items():
        (tmp_path / f"my.{side}").write_text("\n".join(text) + "\n", encoding="utf-8")
    out_dir = tmp_path / "eval"
    ckpt = run["dir"] / "checkpoints" / "best.pt"
    proc = ok(seqlab(run["env"], "eval", f"ckpt_path={ckpt}", "split=test", f"data.test.src={tmp_path / 'my.de'}",
                     f"data.test.tgt={tmp_path / 'my.en'}", "decode.max_len=8", f"hydra.run.dir={out_dir}"))
    assert "test/bleu" in proc.stdout and "my.de" in proc.stderr  # the log says which files
    assert (out_dir / "test.hyp").read_text(encoding="utf-8").count("\n") == 7
    proc = seqlab(run["env"], "eval", f"ckpt_path={ckpt}", "split=test", f"data.test.path={tmp_path / 'my.tsv'}",
                  f"hydra.run.dir={out_dir}")
    assert proc.returncode != 0 and "data.test.src and data.test.tgt" in proc.stderr


def test_eval_with_int8_decoding(run, tmp_path):
    """decode.quantize=int8 decodes the whole validation set and says so in metrics.json."""
    out_dir = tmp_path / "eval"
    proc = ok(seqlab(run["env"], "eval", f"ckpt_path={run['dir'] / 'checkpoints' / 'best.pt'}", "decode.max_len=8",
                     "decode.strategy=beam", "decode.beam_size=3", "decode.quantize=int8", f"hydra.run.dir={out_dir}"))
    assert "val/bleu" in proc.stdout
    result = json.loads((out_dir / "metrics.json").read_text())
    assert result["decode"]["quantize"] == "int8" and result["decode"]["strategy"] == "beam"
    assert (out_dir / "val.hyp").read_text(encoding="utf-8").count("\n") == 1014


@pytest.mark.parametrize("verb", ["eval", "predict"])
@pytest.mark.parametrize("setting,named", [("decode.strategy=bogus", "greedy, beam, sample"),
                                           ("decode.quantize=int4", "none, int8"),
                                           ("decode.beam_size=five", "Integer")])
def test_a_misspelt_decode_value_is_named_before_the_checkpoint_is_read(run, tmp_path, verb, setting, named):
    args = ["ckpt_path=/nonexistent/best.pt", setting, f"hydra.run.dir={tmp_path / 'out'}"]
    proc = seqlab(run["env"], verb, *args, *(["input=x"] if verb == "predict" else []))
    assert proc.returncode != 0
    key = setting.split("=")[0]
    assert key in proc.stderr and named in proc.stderr, proc.stderr
    assert "nonexistent" not in proc.stderr  # the setting is checked first


def test_predict_a_sentence_with_attention_png(run, tmp_path):
    pngs = tmp_path / "att"
    proc = ok(seqlab(run["env"], "predict", f"ckpt_path={run['dir'] / 'checkpoints' / 'best.pt'}",
                     f"input={SENTENCE}", f"attention_dir={pngs}", "decode.max_len=8"))
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    files = list(pngs.glob("*.png"))
    assert len(files) == 1 and files[0].read_bytes()[:4] == b"\x89PNG"


def test_predict_from_a_file_and_from_stdin(run, tmp_path):
    ckpt = f"ckpt_path={run['dir'] / 'checkpoints' / 'last.pt'}"
    inputs = tmp_path / "in.de"
    inputs.write_text(f"{SENTENCE}\n\nzwei hunde spielen im schnee .\n", encoding="utf-8")
    from_file = ok(seqlab(run["env"], "predict", ckpt, f"input={inputs}", "decode.max_len=8")).stdout
    assert len(from_file.splitlines()) == 2  # blank lines are skipped
    from_stdin = ok(seqlab(run["env"], "predict", ckpt, "input=-", "decode.max_len=8",
                           stdin=inputs.read_text(encoding="utf-8"))).stdout
    assert from_stdin == from_file  # greedy decoding: same inputs, same outputs


def test_multirun_one_directory_per_job_and_a_summary(cli_env, tmp_path):
    sweep = tmp_path / "sweep"
    proc = ok(seqlab(cli_env, "train", "-m", "model=gru,lstm_attn", *TINY, "trainer.max_steps=1", "trainer.limit_eval=4",
                     "logger.tensorboard=false", "task.num_samples=0", f"hydra.sweep.dir={sweep}"))
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "metrics.json").exists())
    assert len(jobs) == 2
    assert {json.loads((j / "metrics.json").read_text())["model"] for j in jobs} == {"gru", "lstm_attn"}
    assert all((j / "checkpoints" / "best.pt").is_file() for j in jobs)
    out = proc.stdout
    assert "sweep summary" in out
    table = out[out.index("sweep summary"):]
    assert "model=gru" in table and "model=lstm_attn" in table and "val/bleu" in table
    for j in jobs:
        assert str(j) in table
        assert j.name.startswith(("0_", "1_")) and len(j.name) <= 130  # readable, not too long


def test_a_failing_job_of_a_sweep_lets_the_others_run(cli_env, tmp_path):
    """A job stopped by a user error fails alone: the other jobs run, the summary table lists it as
    FAILED, the sweep exits non-zero with the message, and TensorBoard's HParams row of a job holds
    the settings its command line gave."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sweep = tmp_path / "sweep"
    proc = seqlab(cli_env, "train", "-m", *TINY, "model.hidden_size=15,16", "optimizer.lr=0.003",
                  "trainer.max_steps=1", "trainer.limit_eval=4", "task.num_samples=0", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 1 and "model.hidden_size=15 must be even" in proc.stderr
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [(j / "metrics.json").is_file() for j in jobs] == [False, True]
    table = proc.stdout[proc.stdout.index("sweep summary"):]
    assert table.count("FAILED") == 1 and "val/bleu" in table
    acc = EventAccumulator(str(jobs[1] / "tb"), size_guidance={"tensors": 0})
    acc.Reload()
    hparams = acc.summary_metadata  # the HParams plugin's session start info carries the values
    blob = b"".join(m.plugin_data.content for m in hparams.values() if m.plugin_data.plugin_name == "hparams")
    assert b"optimizer.lr" in blob and b"model.hidden_size" in blob


def test_a_missing_hydra_plugin_names_its_install_command(monkeypatch, cli_env):
    import importlib.util

    from seqlab.cli import missing_plugin

    assert missing_plugin(["model=gru", "trainer=debug"]) is None
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert "pip install -e '.[sweep]'" in missing_plugin(["experiment=sst2", "hparams_search=sst2_optuna"])
    assert "hydra-submitit-launcher" in missing_plugin(["hydra/launcher=submitit_slurm"])
    monkeypatch.undo()
    if importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None:  # as on this project's machine
        proc = seqlab(cli_env, "train", "-m", "hydra/launcher=submitit_slurm")
        assert proc.returncode == 2 and "pip install hydra-submitit-launcher" in proc.stderr
