"""Gradient-norm clipping in the trainer: the norm it reports is the one before clipping, and the
update equals PyTorch's ``clip_grad_norm_`` followed by the optimizer's step, whether the fused
Adam divides the gradients itself (``grad_scale``) or they are scaled beforehand."""

from __future__ import annotations

import pytest
import torch

from seqlab.config import TrainerConfig
from seqlab.training.trainer import Trainer

pytestmark = pytest.mark.unit


def _grads(net: torch.nn.Module, scale: float) -> None:
    torch.manual_seed(3)
    x = torch.randn(16, 6)
    (net(x).pow(2).sum() * scale).backward()


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("scale", [100.0, 1e-4])  # clipped; below the threshold
def test_clipping_matches_pytorch(fused, scale):
    torch.manual_seed(0)
    ref = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    net.load_state_dict(ref.state_dict())
    opt_ref = torch.optim.Adam(ref.parameters(), lr=0.1, fused=fused)
    opt = torch.optim.Adam(net.parameters(), lr=0.1, fused=fused)
    trainer = Trainer(TrainerConfig(grad_clip=1.0, device="cpu"), 0, {})
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    for _ in range(3):
        for model, o in ((ref, opt_ref), (net, opt)):
            o.zero_grad(set_to_none=True)
            _grads(model, scale)
        expect = float(torch.nn.utils.clip_grad_norm_(list(ref.parameters()), 1.0))
        opt_ref.step()
        norm = trainer._clip(list(net.parameters()), opt, scaler)
        # the fused update divides by grad_scale when clipping; otherwise the gradients were scaled
        assert (getattr(opt, "grad_scale", None) is not None) == (fused and scale > 1.0)
        opt.step()
        opt.grad_scale = None
        assert norm == pytest.approx(expect, rel=1e-6)
        assert (norm > 1.0) == (scale > 1.0)
        for a, b in zip(net.parameters(), ref.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_non_finite_norm_stops_the_run_with_a_clear_message(tmp_path):
    net = torch.nn.Linear(2, 2)
    net.weight.grad = torch.full_like(net.weight, float("nan"))
    trainer = Trainer(TrainerConfig(grad_clip=1.0, device="cpu"), 0, {})
    trainer.checkpointer = type("C", (), {"last_path": tmp_path / "last.pt"})()
    opt = torch.optim.Adam(net.parameters(), fused=True)
    with pytest.raises(Exception, match="gradient norm is nan"):
        trainer._clip(list(net.parameters()), opt, torch.amp.GradScaler("cuda", enabled=False))
