"""trainer.ema_decay: the moving average itself, and a run that validates and checkpoints it."""

from __future__ import annotations

import pytest
import torch
from conftest import compose_config

from seqlab.evaluate import restore_task
from seqlab.train import train
from seqlab.training import checkpoint as ckpt_io
from seqlab.training.ema import WeightEMA


@pytest.mark.unit
def test_the_average_follows_its_formula_and_skips_integer_buffers():
    net = torch.nn.BatchNorm1d(3)  # a float parameter, float buffers and an integer buffer
    ema = WeightEMA(net, decay=0.5)
    history = [net.weight.detach().clone()]
    for k in range(1, 4):
        with torch.no_grad():
            net.weight.fill_(float(k))
        net.num_batches_tracked += 1
        ema.update()
        history.append(net.weight.detach().clone())
    # d_n = min(0.5, (1 + n) / (10 + n)) = 0.1, 0.1818.., 0.25 for n = 0, 1, 2
    expect = history[0]
    for n, w in enumerate(history[1:]):
        d = min(0.5, (1 + n) / (10 + n))
        expect = d * expect + (1 - d) * w
    state = ema.state_dict()
    torch.testing.assert_close(state["weight"], expect)
    assert "num_batches_tracked" not in ema.names and state["num_batches_tracked"].item() == 3
    assert not torch.equal(state["weight"], net.weight.detach())


@pytest.mark.unit
def test_applied_swaps_the_average_in_and_the_live_weights_back():
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)
    ema = WeightEMA(net, decay=0.9)
    live = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update()
    moved = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(5, 4)
    with ema.applied():
        for k, v in net.state_dict().items():
            torch.testing.assert_close(v, ema.state_dict()[k])
        torch.testing.assert_close(net(x), torch.nn.functional.linear(x, ema.average[0], ema.average[1]))
    for k, v in net.state_dict().items():
        assert torch.equal(v, moved[k])
    assert not torch.equal(ema.state_dict()["weight"], live["weight"])  # it did move with the update


@pytest.mark.unit
def test_a_decay_outside_0_1_is_refused():
    with pytest.raises(ValueError, match="trainer.ema_decay"):
        WeightEMA(torch.nn.Linear(2, 2), decay=1.0)


TINY = ["task=tagging", "model=lstm", "model.emb_size=16", "model.hidden_size=32", "model.dropout=0.3",
        "task.num_samples=0", "trainer=debug", "trainer.batch_size=8", "trainer.limit_train=48",
        "trainer.limit_eval=16", "trainer.progress_bar=false", "logger.tensorboard=false", "trainer.max_epochs=2",
        "trainer.ema_decay=0.8"]


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_a_run_validates_and_checkpoints_the_average_and_resumes_the_live_weights(tmp_path):
    cache = f"cache_dir={tmp_path / 'cache'}"
    train(compose_config("train", [*TINY, cache]), tmp_path / "full")
    full = ckpt_io.load(tmp_path / "full" / "checkpoints" / "last.pt")
    assert full["ema_updates"] == full["step"] == 12
    assert any(not torch.equal(full["model"][k], full["train_model"][k]) for k in full["model"])
    # the metrics recorded are those of the averaged weights that eval and predict read
    task, _ = restore_task(full, with_data=True, device="cpu")
    assert task.evaluate("val", 16)["val/acc"] == pytest.approx(full["metrics"]["last"]["val/acc"])

    # stopped after 5 steps and resumed to the end: the same live weights and the same average
    train(compose_config("train", [*TINY, cache, "trainer.max_steps=5"]), tmp_path / "part")
    part = tmp_path / "part" / "checkpoints" / "last.pt"
    train(compose_config("train", [*TINY, cache, f"ckpt_path={part}"]), tmp_path / "resumed")
    resumed = ckpt_io.load(tmp_path / "resumed" / "checkpoints" / "last.pt")
    for key in ("model", "train_model"):
        for k, v in full[key].items():
            torch.testing.assert_close(resumed[key][k], v, rtol=0, atol=0, msg=f"{key}.{k}")
