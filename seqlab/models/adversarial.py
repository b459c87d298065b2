"""Adversarial training on a text network's input vectors (``task.adversarial``).

Goodfellow et al. (2015) train on each example and on the example moved a small step in the
direction that raises its loss most. For text the step is taken in the space of the input vectors,
not the words (Miyato et al. 2017 for sentiment; Yasunaga et al. 2018 for POS tagging, where it
helps rare and unseen words most). Per example, the perturbation is the gradient of the loss with
respect to the sentence's input vectors, scaled to an L2 norm of ``epsilon`` times the norm of those
vectors. Relative, not absolute: a network cannot escape the perturbation by growing its embeddings,
and one ``epsilon`` means the same for skip-gram vectors, random embeddings and character features
(Miyato et al. normalise the embeddings instead).
"""

from __future__ import annotations

import torch

from seqlab.errors import ConfigError
from seqlab.models.encoders import length_mask


def check_adversarial(epsilon: float) -> float:
    """``task.adversarial`` as a float, or a ConfigError naming the key."""
    epsilon = float(epsilon)
    if not 0.0 <= epsilon < 1.0:  # a perturbation as large as the input itself is no longer small
        raise ConfigError(f"task.adversarial={epsilon}: the perturbation's size relative to the input vectors "
                          "must be in [0, 1) (0: off; 0.01-0.1 are typical)")
    return epsilon


def adversarial_inputs(loss: torch.Tensor, x: torch.Tensor, lengths: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``x`` (B x S x D input vectors that ``loss`` was computed from) plus the fast-gradient
    perturbation of relative size ``epsilon`` per example, over its first ``lengths[b]`` positions.

    The perturbation is a constant (no gradient flows through its direction), as in the papers;
    gradients reach the network's input layers through ``x`` itself. An example whose gradient is
    zero or not finite is left unperturbed. The graph of ``loss`` is kept for the caller's backward.
    """
    if epsilon <= 0:
        return x
    (g,) = torch.autograd.grad(loss, x, retain_graph=True)
    mask = length_mask(lengths.to(x.device), x.size(1)).unsqueeze(-1)  # B x S x 1
    g = g.detach().float() * mask
    x_norm = (x.detach().float() * mask).flatten(1).norm(dim=1)  # B
    g_norm = g.flatten(1).norm(dim=1)
    ok = torch.isfinite(g_norm) & (g_norm > 0)
    scale = torch.where(ok, epsilon * x_norm / g_norm.clamp(min=1e-30), torch.zeros_like(g_norm))
    r = torch.where(ok[:, None, None], g, torch.zeros_like(g)) * scale[:, None, None]
    return x + r.to(x.dtype)
