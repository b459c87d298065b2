"""Character LM: stream batching, state carrying (chunked == unchunked), presets, debug run, sampling,
the gradient reaching earlier characters (task.gradient_flow)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from textfixtures import PRESETS, TINY, tiny_model

from seqlab.data.chars import CharCorpus, StreamBatchSampler, load_chars
from seqlab.errors import ConfigError, DataError
from seqlab.evaluate import restore_task
from seqlab.models.heads import CharLM
from seqlab.tasks.charlm import CharLMTask, fixed_chunks, gradient_by_lag
from seqlab.train import train
from seqlab.training import checkpoint as ckpt_io

TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east.\n" * 8


def toy_task(preset="lstm", bptt=8, gradient_flow=None, **kw) -> CharLMTask:
    corpus = CharCorpus({"train": TEXT, "val": TEXT[:200]}, "toy")
    return CharLMTask(tiny_model(preset, **kw), data=corpus, bptt=bptt, attn_window=5, eval_streams=3,
                      gradient_flow=gradient_flow)


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
    # task.gradient_flow's defaults: log10 gradient norms at each validation, in metrics.json and TensorBoard
    lags = [f"val/log10_grad_lag_{lag}" for lag in (1, 10, 30, 100)]
    assert all(-30 <= metrics[k] < 2 for k in lags), metrics
    assert json.loads((run / "metrics.json").read_text())["metrics"][lags[-1]] == metrics[lags[-1]]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    assert set(lags) <= set(acc.Tags()["scalars"])
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


def cell_with_gradient_path(cell: str) -> CharLM:
    """A seeded tiny char-LM; rnn: recurrent weights scaled to spectral norm 0.5 (the gradient shrinks
    at least 2x per step); lstm: forget-gate biases at 5 (the cell state keeps ~all of itself)."""
    torch.manual_seed(0)
    net = CharLM(tiny_model(cell), vocab_size=11)
    with torch.no_grad():
        if cell == "rnn":
            w = net.rnn.weight_hh_l0
            w.mul_(0.5 / torch.linalg.matrix_norm(w, 2))
        else:
            H = net.rnn.hidden_size
            net.rnn.bias_ih_l0[H : 2 * H] = 5.0
            net.rnn.bias_hh_l0[H : 2 * H] = 5.0
    return net


@pytest.mark.usefixtures("one_thread")
@pytest.mark.unit
def test_gradient_vanishes_for_rnn_not_for_lstm_with_high_forget_bias():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randint(4, 11, (4, 40), generator=g), torch.randint(4, 11, (4,), generator=g)
    rnn = gradient_by_lag(cell_with_gradient_path("rnn"), x, y)
    lstm = gradient_by_lag(cell_with_gradient_path("lstm"), x, y)
    assert rnn.shape == lstm.shape == (40,)
    assert rnn[1] > 1e-3 and rnn[30] / rnn[1] < 1e-9  # measured: 0.0135 and 1.4e-16
    assert lstm[1] > 1e-3 and 0.1 < lstm[30] / lstm[1] < 10  # measured: 1.8
    assert torch.equal(rnn, gradient_by_lag(cell_with_gradient_path("rnn"), x, y))  # deterministic


@pytest.mark.usefixtures("one_thread")
@pytest.mark.unit
@pytest.mark.parametrize("preset", ["lstm", "gru_attn"])
def test_gradient_flow_metrics_leave_grads_and_mode_alone(preset):
    torch.manual_seed(0)
    task = toy_task(preset, gradient_flow={"lags": [0, 1, 30], "chunks": 3, "length": 40})
    out = task.training_step(task.collate(next(iter(task.make_sampler(task.train_lengths(), 4, 0, True, 50)))))
    out.loss.backward()
    before = {n: p.grad.clone() for n, p in task.network.named_parameters()}
    m = task.evaluate("val")
    assert set(m) == {"val/loss", "val/bpc", "val/log10_grad_lag_0", "val/log10_grad_lag_1", "val/log10_grad_lag_30"}
    for n, p in task.network.named_parameters():
        assert torch.equal(p.grad, before[n]), n
    assert m == task.evaluate("val")  # the same chunks every validation
    x, y = fixed_chunks(task.ids["val"], 40, 3)
    by_lag = gradient_by_lag(task.network, x, y)
    assert m["val/log10_grad_lag_30"] == pytest.approx(math.log10(by_lag[30]))
    for training in (True, False):
        task.network.train(training)
        gradient_by_lag(task.network, x, y)
        assert task.network.training is training
        assert all(mod.training is training for mod in task.network.modules())
    with torch.inference_mode():  # as `seqlab eval` calls it
        assert task.evaluate("val")["val/log10_grad_lag_30"] == m["val/log10_grad_lag_30"]
    fresh = toy_task(preset, gradient_flow={"lags": [1], "chunks": 2, "length": 8})
    fresh.evaluate("val")
    assert all(p.grad is None for p in fresh.network.parameters())
    assert set(toy_task(preset).evaluate("val")) == {"val/loss", "val/bpc"}  # None: off


@pytest.mark.usefixtures("one_thread")
@pytest.mark.unit
def test_gradient_flow_settings_are_checked():
    for gf, key in [({"lags": [30], "length": 30}, "task.gradient_flow.length=30"),
                    ({"lags": [1, -1]}, "task.gradient_flow.lags"), ({"chunks": 0}, "task.gradient_flow.chunks=0")]:
        with pytest.raises(ConfigError, match=key.replace("[", r"\[")):
            toy_task(gradient_flow=gf)
    with pytest.raises(DataError, match="val text \\(200 characters\\).*task.gradient_flow.length=300"):
        toy_task(gradient_flow={"lags": [1], "length": 300})
    assert toy_task(gradient_flow={"lags": [], "length": 300}).evaluate("val").keys() == {"val/loss", "val/bpc"}


@pytest.mark.unit
def test_gradient_flow_config_defaults(compose_cfg):
    gf = compose_cfg(["task=charlm"]).task.gradient_flow
    assert list(gf.lags) == [1, 10, 30, 100] and gf.chunks == 8 and gf.length > max(gf.lags)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.unit
def test_gradient_flow_script_measures_with_the_library():
    path = Path(__file__).resolve().parents[1] / "scripts" / "charlm_gradient_flow.py"
    spec = importlib.util.spec_from_file_location("charlm_gradient_flow", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    torch.manual_seed(0)
    task = toy_task("lstm")
    by_lag, val_loss = script.gradient_by_lag(task, 40, 3)
    x, y = fixed_chunks(task.ids["val"], 40, 3)
    assert by_lag == gradient_by_lag(task.network, x, y).tolist() and len(by_lag) == 40
    assert val_loss == pytest.approx(task.evaluate("val", limit=50)["val/loss"])
