"""Bad input, one test each: a clear message naming the file / line / key, exit code != 0, no Python
traceback, nothing lost (issue 2, "Bad input")."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import compose_config

import seqlab.tasks.translation as translation
from seqlab.errors import CheckpointError, TrainingDiverged
from seqlab.train import train
from seqlab.training import checkpoint as ckpt_io

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

TINY = [
    "model=gru_attn", "model.emb_size=16", "model.hidden_size=32", "task.val_decode.max_len=5",
    "task.num_samples=0", "trainer=debug", "trainer.batch_size=8", "trainer.limit_train=64",
    "trainer.limit_eval=4", "trainer.progress_bar=false", "logger.tensorboard=false",
]


def seqlab(env, *args, stdin=None, timeout=180):
    # one intra-op thread: on a small shared machine, spinning thread pools cost more than they give
    env = {"OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, "-m", "seqlab", *map(str, args)], env=env, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def assert_clean_failure(proc, *needles):
    """Non-zero exit, no traceback, and every needle in the message."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert str(needle) in proc.stderr, f"{needle!r} not in:\n{proc.stderr}"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Tokenised-data cache shared by the in-process runs of this module."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache):
    """A tiny finished run (in process): its checkpoints serve the checkpoint tests."""
    root = tmp_path_factory.mktemp("trained")
    train(compose_config("train", [*TINY, "trainer.max_steps=2", f"cache_dir={cache}"]), root)
    return root


# ---------------------------------------------------------------------------------------- config
def test_misspelt_config_key(cli_env, tmp_path):
    proc = seqlab(cli_env, "train", "model.hiden_size=3", f"hydra.run.dir={tmp_path / 'run'}")
    assert_clean_failure(proc, "hiden_size")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_misspelt_config_value(cli_env, tmp_path):
    proc = seqlab(cli_env, "train", "model.cell=gur", f"hydra.run.dir={tmp_path / 'run'}")
    assert_clean_failure(proc, "gur", "model.cell", "lstm")  # bad value, its key, the valid values


def test_unknown_model_lists_the_choices(cli_env, tmp_path):
    proc = seqlab(cli_env, "train", "model=foo", f"hydra.run.dir={tmp_path / 'run'}")
    assert_clean_failure(proc, "model/foo", "gru_attn", "lstm_attn", "rnn")


# ------------------------------------------------------------------------------------------ data
def _files(tmp_path, **contents: bytes):
    paths = {}
    defaults = {"train_src": b"ein hund .\nzwei katzen .\n", "train_tgt": b"a dog .\ntwo cats .\n",
                "val_src": b"ein hund .\n", "val_tgt": b"a dog .\n"}
    for key, data in {**defaults, **contents}.items():
        p = tmp_path / f"{key.replace('_', '.')}.txt"
        p.write_bytes(data)
        paths[key] = p
    return paths


def _train_on(env, tmp_path, paths):
    return seqlab(env, "train", "data=parallel_files", *TINY,
                  f"data.train.src={paths['train_src']}", f"data.train.tgt={paths['train_tgt']}",
                  f"data.val.src={paths['val_src']}", f"data.val.tgt={paths['val_tgt']}",
                  f"hydra.run.dir={tmp_path / 'run'}")


def test_parallel_files_of_different_lengths(cli_env, tmp_path):
    paths = _files(tmp_path, train_tgt=b"a dog .\ntwo cats .\nthree birds .\n")
    proc = _train_on(cli_env, tmp_path, paths)
    assert_clean_failure(proc, "different lengths", paths["train_src"], paths["train_tgt"], "2 lines", "3")


def test_empty_data_file(cli_env, tmp_path):
    paths = _files(tmp_path, val_src=b"")
    proc = _train_on(cli_env, tmp_path, paths)
    assert_clean_failure(proc, paths["val_src"], "empty")


def test_non_utf8_data_file_names_file_and_line(cli_env, tmp_path):
    paths = _files(tmp_path, train_src=b"ein hund .\nzwei katzen .\nein mann f\xe4hrt .\n",
                   train_tgt=b"a dog .\ntwo cats .\na man drives .\n")
    proc = _train_on(cli_env, tmp_path, paths)
    assert_clean_failure(proc, f"{paths['train_src']}:3", "UTF-8")


# ----------------------------------------------------------------------------------- checkpoints
def test_missing_checkpoint(cli_env, tmp_path):
    missing = tmp_path / "nowhere" / "best.pt"
    proc = seqlab(cli_env, "eval", f"ckpt_path={missing}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert_clean_failure(proc, missing, "no checkpoint")


def test_corrupt_truncated_checkpoint(cli_env, tmp_path, trained):
    data = (trained / "checkpoints" / "last.pt").read_bytes()
    broken = tmp_path / "truncated.pt"
    broken.write_bytes(data[: len(data) // 2])
    proc = seqlab(cli_env, "eval", f"ckpt_path={broken}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert_clean_failure(proc, broken, "corrupt or truncated")


def test_mismatched_checkpoint_names_the_differing_key(cli_env, tmp_path, trained):
    last = trained / "checkpoints" / "last.pt"
    before = last.read_bytes()
    over = [o for o in TINY if not o.startswith("model.hidden_size")]
    proc = seqlab(cli_env, "train", *over, "model.hidden_size=48", "trainer.max_steps=4",
                  f"ckpt_path={last}", f"hydra.run.dir={tmp_path / 'run'}")
    assert_clean_failure(proc, last, "model.hidden_size", "32", "48")
    assert last.read_bytes() == before  # the checkpoint was not touched


def test_mismatched_weights_name_the_parameter(trained):
    """The second line of defence (a checkpoint whose config agrees but weights do not)."""
    ckpt = ckpt_io.load(trained / "checkpoints" / "last.pt")
    net = torch.nn.Linear(3, 4)
    with pytest.raises(CheckpointError, match="weights do not match"):
        ckpt_io.load_weights(net, ckpt["model"], "x.pt")
    state = dict(ckpt["model"])
    key = next(k for k in state if k.endswith("generator.weight"))
    from seqlab.evaluate import restore_task

    task, _ = restore_task(ckpt, with_data=False)
    state[key] = state[key][:, :5]
    with pytest.raises(CheckpointError, match=rf"{key}: \("):
        ckpt_io.load_weights(task.network, state, "x.pt")


class Payload:
    """Unpickling this object would create a marker file (stands in for arbitrary code)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoint_with_pickled_code_is_refused(cli_env, tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": ckpt_io.FORMAT, "version": ckpt_io.VERSION, "model": {}, "config": {}, "task": {},
                "payload": Payload(marker)}, evil)
    proc = seqlab(cli_env, "eval", f"ckpt_path={evil}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert_clean_failure(proc, evil, "refused")
    assert not marker.exists(), "eval executed code from the checkpoint"
    # the payload is live: an unsafe load would have run it
    torch.load(evil, weights_only=False)
    assert marker.exists()


# -------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, cache, bad):
    real_step = translation.TranslationTask.training_step
    calls = {"n": 0}

    def step(self, batch):
        out = real_step(self, batch)
        calls["n"] += 1
        if calls["n"] == 3:
            out.loss = out.loss * float(bad)
        return out

    monkeypatch.setattr(translation.TranslationTask, "training_step", step)
    cfg = compose_config("train", [*TINY, "trainer.max_steps=6", "trainer.val_every_steps=2",
                                   f"cache_dir={cache}"])
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(TrainingDiverged) as e:
        train(cfg, run)
    last = run / "checkpoints" / "last.pt"
    msg = str(e.value)
    assert "step 3" in msg and bad in msg.lower() and str(last) in msg
    ckpt = ckpt_io.load(last)  # still a whole, loadable checkpoint ...
    assert ckpt["step"] == 2  # ... from before the divergence
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())
    assert not list((run / "checkpoints").glob("*.tmp"))
