"""Character LM: stream batching, state carrying (chunked == unchunked), presets, debug run, sampling."""

from __future__ import annotations

import pytest
import torch
from textfixtures import PRESETS, TINY, tiny_model

from seqlab.data.chars import CharCorpus, StreamBatchSampler, load_chars
from seqlab.errors import DataError
from seqlab.evaluate import restore_task
from seqlab.models.heads import CharLM
from seqlab.tasks.charlm import CharLMTask
from seqlab.train import train
from seqlab.training import checkpoint as ckpt_io

TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east.\n" * 8


def toy_task(preset="lstm", bptt=8, **kw) -> CharLMTask:
    corpus = CharCorpus({"train": TEXT, "val": TEXT[:200]}, "toy")
    return CharLMTask(tiny_model(preset, **kw), data=corpus, bptt=bptt, attn_window=5, eval_streams=3)


@pytest.mark.unit
def test_stream_sampler_rows_continue_and_resume():
    s = StreamBatchSampler([8] * 10, batch_size=3)
    batches = list(s)
    assert batches == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]  # chunk 9 does not fill a stream
    assert s.epoch == 1 and len(s) == 3
    it = iter(s)
    next(it)
    state = s.state_dict()
    t = StreamBatchSampler([8] * 10, batch_size=3)
    t.load_state_dict(state)
    assert list(t) == batches[1:]


@pytest.mark.unit
def test_split_first_90_last_10(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("abcdefghij" * 10, encoding="utf-8")
    c = load_chars(str(p))
    assert c.splits["train"] == ("abcdefghij" * 10)[:90] and c.splits["val"] == "abcdefghij"
    with pytest.raises(DataError, match="data.val_fraction"):
        load_chars(str(p), val_fraction=1.0)
    (tmp_path / "e.txt").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        load_chars(str(tmp_path / "e.txt"))


@pytest.mark.unit
@pytest.mark.parametrize("preset", ["rnn", "gru", "lstm", "lstm_attn", "gru_attn"])
def test_chunked_forward_equals_unchunked(preset):
    torch.manual_seed(0)
    net = CharLM(tiny_model(preset, num_layers=2), vocab_size=11, window=5).eval()
    x = torch.randint(4, 11, (3, 24))
    with torch.no_grad():
        full, _, _ = net(x)
        state, parts = None, []
        for s in range(0, 24, 7):  # chunks of 7, 7, 7, 3
            out, state, _ = net(x[:, s : s + 7], state)
            state = state.detach()
            parts.append(out)
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)


@pytest.mark.unit
def test_training_carries_state_between_consecutive_batches():
    task = toy_task(bptt=8)
    sampler = task.make_sampler(task.train_lengths(), 4, 0, True, 50)
    batches = list(sampler)
    b0, b1 = task.collate(batches[0]), task.collate(batches[1])
    assert not b0.continues and b1.continues
    assert torch.equal(b1.x[:, 0], b0.y[:, -1])  # row b of batch 1 continues row b of batch 0
    task.training_step(b0)
    assert task._state is not None and task._state.rnn[0].grad_fn is None  # detached
    again = task.collate(batches[0])  # a new epoch starts over: no carry
    assert not again.continues


@pytest.mark.contract
@pytest.mark.parametrize("preset", PRESETS)
def test_contract_every_preset(preset):
    torch.manual_seed(0)
    task = toy_task(preset, num_layers=2)
    batches = list(task.make_sampler(task.train_lengths(), 4, 0, True, 50))
    task.training_step(task.collate(batches[0]))  # the second batch carries the state
    batch = task.collate(batches[1])
    logits, _, weights = task.network(batch.x)
    assert logits.shape == (4, 8, len(task.vocab))
    if preset.endswith("_attn"):
        assert weights.shape == (4, 8, 5)
    task.network.zero_grad()
    out = task.training_step(batch)
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.n_tokens == 32
    for name, p in task.network.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    m = task.evaluate("val")
    assert set(m) == {"val/loss", "val/bpc"} and abs(m["val/bpc"] * 0.6931 - m["val/loss"]) < 1e-3


@pytest.mark.smoke
def test_debug_run_and_sampling(compose_cfg, tmp_path):
    cfg = compose_cfg(["task=charlm", "model=gru_attn", "trainer=debug", "trainer.progress_bar=false",
                       "task.bptt=32", "task.sample_len=20", *TINY])
    run = tmp_path / "run"
    run.mkdir()
    metrics = train(cfg, run)
    assert metrics["val/loss"] < 4.2 and "val/bpc" in metrics  # below uniform over 65 characters
    assert (run / "checkpoints" / "best.pt").is_file() and list((run / "tb").glob("events.*"))
    task, _ = restore_task(ckpt_io.load(run / "checkpoints" / "best.pt"), with_data=False)
    [text] = task.predict(["ROMEO:"], {"max_len": 40, "temperature": 0.8, "top_k": 10})
    assert text.startswith("ROMEO:") and len(text) == 46
    assert set(text) <= set(task.vocab.itos[4:])
    [greedy] = task.predict(["ROMEO:"], {"max_len": 10, "temperature": 0.0})
    assert greedy == task.predict(["ROMEO:"], {"max_len": 10, "temperature": 0.0})[0]


@pytest.mark.slow
def test_cli_predict_samples_a_continuation(compose_cfg, tmp_path, cli_env):
    import subprocess
    import sys

    cfg = compose_cfg(["task=charlm", "model=lstm", "trainer=debug", "trainer.max_steps=2", "trainer.progress_bar=false",
                       "task.bptt=16", "task.sample_len=0", *TINY])
    run = tmp_path / "run"
    run.mkdir()
    train(cfg, run)
    r = subprocess.run([sys.executable, "-m", "seqlab", "predict", f"ckpt_path={run / 'checkpoints' / 'best.pt'}",
                        "input=ROMEO:", "decode.max_len=30", "decode.top_k=5"],
                       capture_output=True, text=True, env=cli_env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ROMEO:") and len(r.stdout.rstrip("\n")) >= 30
