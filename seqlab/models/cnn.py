"""Image encoders: a small in-project CNN and torchvision ResNets, frozen or fine-tuned, and an
on-disk cache of a frozen encoder's features.

Every backbone maps ``B x 3 x H x W`` uint8 (or float in [0, 1]) images to a ``B x C x h x w`` grid
of feature vectors; tasks decide what to do with the grid (attend over it, average it, flatten it).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from seqlab.errors import SeqlabError
from seqlab.runtime import atomic_file

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESNETS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}


class SmallCNN(nn.Module):
    """``len(channels)`` blocks of conv3x3 -> BatchNorm -> ReLU -> 2x2 max-pool: a 64 px image and
    three blocks give an 8 x 8 grid. Fast enough to train from scratch on a CPU."""

    def __init__(self, channels: Sequence[int] = (32, 64, 128), in_channels: int = 3, coords: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        self.coords = coords  # CoordConv (Liu et al. 2018): x and y in [-1, 1] as two more input channels
        c_in = in_channels + (2 if coords else 0)
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.out_channels = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.coords:
            B, _, H, W = x.shape
            ys = torch.linspace(-1, 1, H, device=x.device, dtype=x.dtype).view(1, 1, H, 1).expand(B, 1, H, W)
            xs = torch.linspace(-1, 1, W, device=x.device, dtype=x.dtype).view(1, 1, 1, W).expand(B, 1, H, W)
            x = torch.cat([x, xs, ys], dim=1)
        return self.body(x)


def _weights_error(backbone: str, weights: str, why: str, url: str | None = None) -> SeqlabError:
    where = torch.hub.get_dir()
    fetch = (f"download {url} on a machine with a network and either set task.encoder.weights=/path/to/"
             f"{url.rsplit('/', 1)[-1]} or copy the file to {where}/checkpoints/" if url else
             "set task.encoder.weights=/path/to/a/state_dict.pth (a local file)")
    return SeqlabError(
        f"task.encoder.weights={weights!r} for {backbone}: {why}. To use pretrained weights offline, {fetch}; "
        "task.encoder.weights=null trains from a random initialisation."
    )


def _state_dict_from_file(path: Path, backbone: str) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a bad file
        raise SeqlabError(f"task.encoder.weights={str(path)!r}: cannot load it as a {backbone} state_dict "
                          f"({type(e).__name__}: {e})") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise SeqlabError(f"task.encoder.weights={str(path)!r}: not a state_dict")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _pretrained_state(backbone: str, weights: str) -> dict[str, torch.Tensor]:
    """The state_dict named by ``weights``: a local file, or a torchvision weights enum name."""
    path = Path(os.path.expanduser(weights))
    if path.suffix in (".pt", ".pth", ".bin") or path.exists():
        if not path.is_file():
            raise _weights_error(backbone, weights, f"file {path} not found")
        return _state_dict_from_file(path, backbone)
    from torchvision.models import get_model_weights

    enum = get_model_weights(backbone)
    name = weights.split(".")[-1]
    try:
        w = enum[name] if name != "DEFAULT" else enum.DEFAULT
    except KeyError:
        names = ", ".join(["DEFAULT", *enum.__members__])
        raise _weights_error(backbone, weights, f"not a file and not one of {names}") from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / w.url.rsplit("/", 1)[-1]
    offline = os.environ.get("SEQLAB_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
    if not cached.is_file() and offline:
        raise _weights_error(backbone, weights, f"not in the torch hub cache ({cached}) and offline mode is on", w.url)
    try:
        return w.get_state_dict(progress=False)
    except Exception as e:  # URLError, timeouts, a truncated download...
        raise _weights_error(backbone, weights, f"cannot download ({type(e).__name__}: {e})", w.url) from None


class ImageBackbone(nn.Module):
    """Normalisation + CNN trunk -> ``B x C x h x w``. ``trainable=False`` freezes it (and keeps its
    BatchNorm statistics fixed: it stays in eval mode whatever ``train()`` says)."""

    def __init__(self, backbone: str = "small", weights: str | None = None, trainable: bool = True,
                 channels: Sequence[int] = (32, 64, 128), load_weights: bool = True, coords: bool = False):
        super().__init__()
        backbone = getattr(backbone, "value", backbone)
        self.name, self.trainable = backbone, trainable
        if backbone == "small":
            body = SmallCNN(channels, coords=coords)
            if weights and load_weights:
                body.load_state_dict(_state_dict_from_file(Path(weights), backbone))
            self.trunk, self.out_channels = body, body.out_channels
            mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
        elif backbone in RESNETS:
            import torchvision

            net = getattr(torchvision.models, backbone)(weights=None)
            if weights and load_weights:
                state = _pretrained_state(backbone, weights)
                missing, _ = net.load_state_dict(state, strict=False)
                missing = [k for k in missing if not k.startswith("fc.")]
                if missing:
                    raise SeqlabError(f"task.encoder.weights={weights!r}: not {backbone} weights "
                                      f"(missing {', '.join(missing[:3])} ...)")
                log.info("%s: loaded weights %s", backbone, weights)
            self.trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                                       net.layer1, net.layer2, net.layer3, net.layer4)
            self.out_channels = RESNETS[backbone]
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        else:
            raise SeqlabError(f"task.encoder.backbone={backbone!r}: use small, resnet18, resnet34 or resnet50")
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        if not trainable:
            self.trunk.requires_grad_(False)
            self.trunk.eval()

    def train(self, mode: bool = True) -> ImageBackbone:
        super().train(mode)
        if not self.trainable:
            self.trunk.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: B x 3 x H x W, uint8 or float in [0, 1]. Returns B x C x h x w."""
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images
        return self.trunk((x - self.mean) / self.std)

    @torch.no_grad()
    def grid_shape(self, image_size: int) -> tuple[int, int, int]:
        """(C, h, w) for square images of ``image_size`` pixels."""
        was = self.training
        self.eval()
        out = self(torch.zeros(1, 3, image_size, image_size))
        self.train(was)
        return tuple(out.shape[1:])  # type: ignore[return-value]

    def fingerprint(self) -> str:
        """Changes with any weight: the key of its cached features."""
        h = hashlib.sha1(self.name.encode())
        for k, v in self.trunk.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


class FeatureCache:
    """A frozen backbone's features of every item of a split, computed once (lazily, the first time
    an item is asked for) and then kept in memory and written to ``<cache_dir>/features/``.

    ``items(split, indices)`` must return the ``len(indices) x 3 x H x W`` images of those items.
    The first epoch computes features as batches come; later epochs (and later runs with the same
    data and weights) only read them.
    """

    def __init__(self, backbone: ImageBackbone, cache_dir: str | Path | None, data_key: str,
                 items: Callable[[str, Sequence[int]], torch.Tensor], sizes: dict[str, int], batch_size: int = 64):
        self.backbone, self.data_key, self.items, self.sizes = backbone, data_key, items, sizes
        self.dir = Path(cache_dir) / "features" if cache_dir else None
        self.batch_size = batch_size
        self.feats: dict[str, torch.Tensor] = {}
        self.done: dict[str, torch.Tensor] = {}
        self._key: str | None = None

    def _path(self, split: str) -> Path | None:
        if self.dir is None:
            return None
        if self._key is None:  # lazily: a restored checkpoint loads its weights after __init__
            self._key = self.backbone.fingerprint()
        return self.dir / f"{self.data_key[:16]}-{self._key}-{split}.pt"

    def _load(self, split: str) -> None:
        path = self._path(split)
        if path is None or not path.is_file():
            return
        try:
            feats = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a half-written or foreign file: recompute
            log.warning("ignoring unreadable feature cache %s", path)
            return
        if feats.shape[0] == self.sizes[split]:
            self.feats[split] = feats
            self.done[split] = torch.ones(feats.shape[0], dtype=torch.bool)
            log.info("features of %s from cache %s", split, path)

    @torch.no_grad()
    def get(self, split: str, indices: Sequence[int], device: torch.device) -> torch.Tensor:
        """``len(indices) x C x h x w`` float features of those items."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        if split not in self.feats:
            self._load(split)
        missing = idx[~self.done[split][idx]].unique() if split in self.feats else idx.unique()
        for s in range(0, len(missing), self.batch_size):
            chunk = missing[s : s + self.batch_size]
            self.backbone.eval()
            out = self.backbone(self.items(split, chunk.tolist()).to(device)).float().cpu()
            if split not in self.feats:
                self.feats[split] = torch.zeros((self.sizes[split], *out.shape[1:]), dtype=torch.float16)
                self.done[split] = torch.zeros(self.sizes[split], dtype=torch.bool)
            self.feats[split][chunk] = out.half()
            self.done[split][chunk] = True
            if bool(self.done[split].all()):
                self._save(split)
        return self.feats[split][idx].float().to(device)

    def _save(self, split: str) -> None:
        path = self._path(split)
        if path is None:
            return
        with atomic_file(path, "wb") as f:
            torch.save(self.feats[split], f)
        log.info("features of %s cached in %s", split, path)
