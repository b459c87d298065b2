"""task.adversarial: the fast-gradient perturbation of the input vectors, in the tagger and the classifier."""

from __future__ import annotations

import pytest
import torch
from test_sentiment import toy_corpus as toy_reviews
from test_tagging import toy_corpus as toy_tags
from textfixtures import TINY, tiny_model

from seqlab.errors import ConfigError
from seqlab.models.adversarial import adversarial_inputs, check_adversarial
from seqlab.tasks.sentiment import SentimentTask
from seqlab.tasks.tagging import TaggingTask
from seqlab.train import train


def toy_loss(x: torch.Tensor, lengths: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """A smooth loss over the real positions; the third example contributes nothing."""
    mask = (torch.arange(x.size(1))[None] < lengths[:, None]).float()
    per_example = (torch.tanh(x @ w) ** 2 * mask).sum(1)
    return (per_example * torch.tensor([1.0, 1.0, 0.0])).sum()


@pytest.mark.unit
def test_perturbation_is_the_gradient_scaled_to_a_fraction_of_each_input():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5, requires_grad=True)
    lengths, w = torch.tensor([4, 2, 3]), torch.randn(5)
    loss = toy_loss(x, lengths, w)
    moved = adversarial_inputs(loss, x, lengths, 0.1)
    r = (moved - x).detach()
    (g,) = torch.autograd.grad(loss, x, retain_graph=True)  # the graph was kept for the caller
    for b, n in enumerate(lengths.tolist()):
        assert (r[b, n:] == 0).all()  # padding is never moved
        if b < 2:  # norm: 0.1 of the example's input over its real positions; direction: its gradient
            torch.testing.assert_close(r[b].norm(), 0.1 * x[b, :n].detach().norm())
            torch.testing.assert_close(r[b, :n] / r[b].norm(), g[b, :n] / g[b].norm())
    assert (r[2] == 0).all()  # a zero gradient: unperturbed
    # to first order the gradient direction raises the loss more than any other of the same norm
    rand = torch.randn_like(r) * (torch.arange(4)[None, :, None] < lengths[:, None, None])
    rand = rand * (r.flatten(1).norm(dim=1) / rand.flatten(1).norm(dim=1))[:, None, None]
    with torch.no_grad():
        assert toy_loss(moved, lengths, w) > toy_loss(x + rand, lengths, w) > 0
    # the perturbation is a constant: the gradient through `moved` is the identity's
    (gm,) = torch.autograd.grad(moved.sum(), x)
    assert (gm == 1).all()
    assert adversarial_inputs(loss, x, lengths, 0.0) is x


@pytest.mark.unit
def test_bad_epsilon_names_the_key():
    assert check_adversarial(0) == 0.0 and check_adversarial("0.05") == 0.05
    for bad in (-0.1, 1.0, 3):
        with pytest.raises(ConfigError, match=r"task\.adversarial=.* must be in \[0, 1\)"):
            check_adversarial(bad)
    with pytest.raises(ConfigError, match=r"task\.adversarial"):
        TaggingTask(tiny_model("lstm"), data=toy_tags(), adversarial=-1)
    with pytest.raises(ConfigError, match=r"task\.adversarial"):
        SentimentTask(tiny_model("lstm"), data=toy_reviews(), adversarial=2)


def check_step(task, batch, logs_loss: str) -> None:
    """The step's loss is the clean loss plus the perturbed one; the perturbed one is larger
    (dropout 0: the same network, moved uphill); every parameter gets a finite gradient."""
    out = task.training_step(batch)
    logs = out.logs
    torch.testing.assert_close(out.loss.item(), logs[logs_loss] + logs["adv_loss"])
    assert logs["adv_loss"] > logs[logs_loss]
    out.loss.backward()
    for name, p in task.network.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.contract
@pytest.mark.parametrize("preset", ["lstm", "gru_attn"])
@pytest.mark.parametrize("char_features", ["lstm", "cnn"])
def test_tagger_step_adds_the_perturbed_loss(preset, char_features):
    torch.manual_seed(0)
    task = TaggingTask(tiny_model(preset), data=toy_tags(), char_features=char_features, adversarial=0.2,
                       packed=preset == "lstm")
    check_step(task, task.collate([0, 1, 2]), "loss")
    # off: one loss, no adversarial log, the same clean loss as with it on (same weights, no dropout)
    clean = TaggingTask(tiny_model(preset), data=toy_tags(), char_features=char_features,
                        packed=preset == "lstm")
    clean.network.load_state_dict(task.network.state_dict())
    off = clean.training_step(task.collate([0, 1, 2]))
    assert "adv_loss" not in off.logs
    torch.testing.assert_close(off.loss.item(), task.training_step(task.collate([0, 1, 2])).logs["loss"])


@pytest.mark.contract
@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("pooling", ["final", "concat"])
def test_classifier_step_adds_the_perturbed_loss(packed, pooling):
    torch.manual_seed(0)
    task = SentimentTask(tiny_model("lstm"), data=toy_reviews(), pooling=pooling, packed=packed, adversarial=0.2)
    check_step(task, task.collate(list(range(6))), "loss")


@pytest.mark.smoke
@pytest.mark.parametrize("task", ["tagging", "sentiment"])
def test_debug_run_with_adversarial_training(compose_cfg, tmp_path, task):
    cfg = compose_cfg([f"task={task}", "model=lstm", "trainer=debug", "trainer.progress_bar=false",
                       "task.adversarial=0.05", *TINY])
    metrics = train(cfg, tmp_path)
    assert metrics["val/acc"] >= 0 and (tmp_path / "checkpoints" / "best.pt").is_file()
