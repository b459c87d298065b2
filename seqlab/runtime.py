"""Process-wide set-up shared by the verbs: seeds, threads, config location, error reporting."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import random
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path

import torch
from hydra.errors import CompactHydraException
from omegaconf import OmegaConf

from seqlab.errors import ConfigError, SeqlabError

log = logging.getLogger("seqlab")


@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8",
                sync: bool = False) -> Iterator:
    """A file object for ``path`` that is written under a temporary name of its own in the same
    directory and renamed over ``path`` when the block ends: a reader never sees a half-written
    file, and processes writing the same path at once (a sweep's jobs filling one cache) do not
    trip over each other's temporary files. On an error the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

# conf/ sits beside the package in a source checkout (and an editable install).
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


MAX_DIRNAME = 120  # file systems allow 255 bytes per name; leave room for the job number


def short_dirname(name: str, limit: int = MAX_DIRNAME) -> str:
    """A sweep job's directory name (``hydra.job.override_dirname``): one path component (a path
    in a value, ``ckpt_path=runs/a/best.pt``, must not nest directories), cut to ``limit`` bytes
    with a short hash of the whole so that names stay unique; a long override list otherwise
    makes ``mkdir`` fail with "File name too long"."""
    name = str(name).replace("/", "_").replace("\\", "_")
    if len(name.encode()) <= limit:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    head = name.encode()[: limit - len(digest) - 1].decode("utf-8", errors="ignore")
    return f"{head}_{digest}"


if not OmegaConf.has_resolver("seqlab.dirname"):
    OmegaConf.register_new_resolver("seqlab.dirname", short_dirname)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # numpy is optional
        pass


def resolve_device(name: str) -> torch.device:
    """``auto``: the GPU when there is one, else the CPU; any other name as torch reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 matrix products beat fp32 ones on ``device`` (``precision=fast`` picks bf16 then).

    On a CPU with AMX tiles (Intel Sapphire Rapids and later, where the hypervisor exposes them)
    they do: oneDNN's bf16 matmul runs ~4x faster than fp32 there. Without AVX-512-BF16 they do
    not. With AVX-512-BF16 but no AMX it depends on the CPU, so it is measured once per process
    (``bf16_matmul_speedup``): on an Emerald Rapids VM without AMX bf16 products ran at 0.53-0.74x
    fp32's speed and the translation benchmark trained at 1,955 target tokens/s in bf16 against
    3,057 in fp32 (docs/translation.md, session 10); on an AMD EPYC (Zen 4) VM they ran at
    2.3-4.4x (session 15; ``scripts/bench_matmul.py`` gives both figures for any CPU).
    On CUDA: a GPU that supports bf16."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu" or not _cpu_has("avx512_bf16"):
        return False
    return _cpu_has("amx") or bf16_matmul_speedup() >= _BF16_FAST_ENOUGH


_BF16_FAST_ENOUGH = 1.5  # the two kinds of CPU measured so far lie far either side (0.5-0.7x, 2.3x and up)


@functools.cache
def bf16_matmul_speedup() -> float:
    """How many times faster a bf16 matrix product of a recurrent layer's size (512 x 1024 x 1024)
    runs than the fp32 one on this CPU, with torch's threads: the best of five of each, after a
    warm-up (~50 ms in all). Cached: measured once per process, logged."""
    import time

    a, b = torch.randn(512, 1024), torch.randn(1024, 1024)
    best = {}
    for dtype in (torch.float32, torch.bfloat16):
        x, y = a.to(dtype), b.to(dtype)
        torch.mm(x, y)  # warm-up: oneDNN picks and caches its kernel
        times = []
        for _ in range(5):
            start = time.perf_counter()
            torch.mm(x, y)
            times.append(time.perf_counter() - start)
        best[dtype] = min(times)
    speedup = best[torch.float32] / max(best[torch.bfloat16], 1e-9)
    log.info("bf16 matrix products run %.2fx as fast as fp32 on this CPU (AVX-512-BF16 without AMX): "
             "precision=fast picks %s", speedup, "bf16" if speedup >= _BF16_FAST_ENOUGH else "fp32")
    return speedup


_CPU_PROBES = {"amx": "_is_amx_tile_supported", "avx512_bf16": "_is_avx512_bf16_supported",
               "avx512": "_is_avx512_supported"}  # torch.cpu's probes (False where torch lacks one)


def _cpu_has(feature: str) -> bool:
    return bool(getattr(torch.cpu, _CPU_PROBES[feature], lambda: False)())


def cpu_features() -> dict[str, bool]:
    """The CPU features behind the precision choice, for benchmark records."""
    return {name: _cpu_has(name) for name in _CPU_PROBES}


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``trainer.precision`` (None: full fp32). ``fast`` is bf16 where the
    hardware runs bf16 matmuls faster than fp32 (``bf16_is_fast``), otherwise what ``auto`` gives."""
    precision = getattr(precision, "value", precision)
    if precision == "fast":
        precision = "bf16" if bf16_is_fast(device) else "auto"
    elif precision == "bf16" and device.type == "cpu" and not bf16_is_fast(device):
        _warn_slow_bf16()
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    choices = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in choices:
        raise ConfigError(f"precision={precision!r} is not one of auto, fast, {', '.join(choices)}")
    return choices[precision]


def precision_name(dtype: torch.dtype | None) -> str:
    """``autocast_dtype``'s answer as a precision name: fp32, bf16 or fp16."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


@functools.cache
def _warn_slow_bf16() -> None:
    log.warning("precision=bf16 on a CPU whose bf16 matrix products run no faster than fp32 ones "
                "(precision=fast picks fp32 here; bf16 where the CPU has AMX, or AVX-512-BF16 that is fast)")


def set_threads(n: int) -> None:
    if n > 0:
        torch.set_num_threads(n)


def reuse_freed_memory() -> bool:
    """For a training process (``trainer.reuse_freed_memory``): glibc serves every allocation from
    its heap and keeps freed memory there for the next one. Returns whether it applied (glibc only).

    By default glibc maps each allocation above a threshold (32 MiB at most) as fresh pages and
    unmaps it when it is freed, so the kernel zero-fills every page again on first touch. A training
    step allocates and frees tensors that large at every step: the dense gradient of a 40k-word
    embedding (42 MiB), a batch's logits over an 8k-word vocabulary (up to 64 MiB). Language-model
    pretraining took ~50,000 page faults a step that way, 2,000 with this, and a step a quarter
    less time (docs/text_tasks.md, session 8). The cost: memory freed after a peak stays with the
    process (its peak RSS is unchanged, the RSS does not fall back after it)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # glibc's <malloc.h>
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


def lean_decoding_memory() -> None:
    """For a process that decodes (eval, predict); call before its first matmul.

    oneDNN (PyTorch's CPU matmul for bf16) builds and caches a kernel for each matrix shape it
    meets, 1,024 by default; a decoder meets many (finished sentences leave the batch, every batch
    has its own source length). Keeping 64 of them lowers the decoding peak RSS by ~60 MiB at no
    measurable cost in speed (docs/translation.md). A capacity the user set wins."""
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")


def offline_defaults() -> None:
    """Never hang on a hub request when the user has not said they are online."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


class JobFailed(CompactHydraException):
    """A job of a sweep stopped by a user error: Hydra marks the job failed and prints the message
    alone; Optuna's sweeper counts a failed trial (``hydra.sweeper.max_failure_rate``) and goes on."""


def in_sweep() -> bool:
    """Whether this process runs a job of a Hydra multirun (``seqlab train -m``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def user_errors(fn: Callable) -> Callable:
    """Turn a ``SeqlabError`` into a one-line message and a non-zero exit, without a traceback."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            try:
                return fn(*args, **kwargs)
            except Exception as e:  # Hydra's instantiate wraps what the target raised
                cause = e
                while cause is not None and not isinstance(cause, SeqlabError):
                    cause = cause.__cause__
                if cause is None:
                    raise
                raise cause from None
        except SeqlabError as e:
            log.debug("error: %s", e)
            print(f"seqlab: error: {e}", file=sys.stderr)
            if in_sweep():  # the job fails, the sweep goes on (Hydra catches exceptions, not exits)
                raise JobFailed(f"seqlab: error: {e}") from None
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            print("seqlab: interrupted; checkpoints written so far are intact", file=sys.stderr)
            sys.exit(130)

    return wrapper
