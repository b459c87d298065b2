"""Hydra's sweep plugins (``pip install -e '.[sweep]'``, docs/sweeps.md): an Optuna search through
the CLI (``hparams_search=...`` and the plain ``hydra/sweeper=optuna`` form), trials side by side
with the joblib launcher, and the ``conf/hparams_search`` presets composing against the schemas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep
from omegaconf import OmegaConf

from seqlab.runtime import CONF_DIR

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")

# each hparams_search preset and the experiment it searches around
SEARCHES = {"multi30k_optuna": "multi30k_de_en", "sst2_optuna": "sst2"}
DIRECTION = {"max": "maximize", "min": "minimize"}

# a few steps of a tiny translator: each trial takes a second or two after start-up
TINY = [
    "model.emb_size=16", "trainer=debug", "trainer.max_steps=2", "trainer.batch_size=8",
    "trainer.limit_train=32", "trainer.limit_eval=4", "trainer.num_threads=1", "trainer.progress_bar=false",
    "task.val_decode.max_len=6", "task.num_samples=0",
    "logger.tensorboard=false",
]


def seqlab(env, *args, timeout=240):
    env = {"OMP_NUM_THREADS": "1", **env}
    proc = subprocess.run([sys.executable, "-m", "seqlab", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def trial_dirs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if (p / "metrics.json").is_file()),
                  key=lambda p: int(p.name.split("_", 1)[0]))


def trial_overrides(job: Path) -> dict[str, str]:
    """The ``key=value`` overrides a trial ran with (what the sweeper sampled, and the fixed ones)."""
    return dict(o.split("=", 1) for o in OmegaConf.load(job / ".hydra" / "overrides.yaml"))


def compose_search(search: str, overrides=()):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=[f"experiment={SEARCHES[search]}", f"hparams_search={search}",
                                           *overrides], return_hydra_config=True)


# ------------------------------------------------------------------------- presets compose
@pytest.mark.unit
def test_every_search_preset_is_listed_here():
    assert {p.stem for p in (Path(CONF_DIR) / "hparams_search").glob("*.yaml")} == set(SEARCHES)


@pytest.mark.unit
@pytest.mark.parametrize("search", sorted(SEARCHES))
def test_search_preset_composes_and_its_keys_exist(search):
    cfg = compose_search(search)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert str(cfg.hydra.mode).endswith("MULTIRUN")
    # the sweeper maximises or minimises what `seqlab train` returns: the best task.monitor
    assert sweeper.direction == DIRECTION[cfg.task.monitor_mode], (cfg.task.monitor, cfg.task.monitor_mode)
    assert sweeper.n_trials > 0 and sweeper.sampler.seed is not None
    assert sweeper.params
    parser = OverridesParser.create()
    picks = []
    for key, value in sweeper.params.items():
        assert OmegaConf.select(cfg, key, default="<missing>") != "<missing>", f"{search}: no config key {key}"
        sweep = parser.parse_override(f"{key}={value}")
        assert sweep.is_sweep_override(), f"{search}: {key}={value} is not a search range"
        rng = sweep.value()
        if isinstance(rng, IntervalSweep):
            assert rng.start < rng.end
            picks += [f"{key}={rng.start}", f"{key}={rng.end}"]
        else:
            assert isinstance(rng, ChoiceSweep) and len(rng.list) > 1
            picks += [f"{key}={v}" for v in rng.list]
    # every end of every range is a value the schemas accept (a float for an int key fails here)
    for pick in picks:
        key, value = pick.split("=", 1)
        assert OmegaConf.select(compose_search(search, [pick]), key) == pytest.approx(float(value))


# ------------------------------------------------------------------- searches, end to end
@pytest.mark.slow
def test_optuna_search_through_the_cli(cli_env, tmp_path):
    """hparams_search=multi30k_optuna without -m (the preset sets hydra.mode), 3 trials, one range
    replaced on the command line; the summary table still comes out (basic launcher)."""
    sweep = tmp_path / "sweep"
    proc = seqlab(cli_env, "train", "experiment=multi30k_de_en", "hparams_search=multi30k_optuna",
                  "hydra.sweeper.n_trials=3", "model.hidden_size=choice(16,32)", *TINY,
                  f"hydra.sweep.dir={sweep}")
    jobs = trial_dirs(sweep)
    assert len(jobs) == 3
    sampled = [trial_overrides(j) for j in jobs]
    searched = {"optimizer.lr", "model.dropout", "model.hidden_size", "task.label_smoothing"}
    assert all(searched <= s.keys() for s in sampled)
    lrs = [float(s["optimizer.lr"]) for s in sampled]
    assert len(set(lrs)) == 3 and all(1e-4 <= lr <= 3e-3 for lr in lrs)
    assert len({s["model.dropout"] for s in sampled}) == 3
    assert {int(s["model.hidden_size"]) for s in sampled} <= {16, 32}
    # each trial's config is what the sweeper sampled
    for job, s in zip(jobs, sampled, strict=True):
        cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
        assert cfg.optimizer.lr == pytest.approx(float(s["optimizer.lr"]))
        assert cfg.model.hidden_size == int(s["model.hidden_size"])

    results = OmegaConf.load(sweep / "optimization_results.yaml")
    assert results.name == "optuna" and set(results.best_params) == searched
    bests = [json.loads((j / "metrics.json").read_text())["best"] for j in jobs]
    assert results.best_value == pytest.approx(max(bests))  # direction: maximize (val/bleu)
    best_job = jobs[bests.index(max(bests))]
    assert float(results.best_params["optimizer.lr"]) in lrs and best_job.is_dir()

    out = proc.stdout
    assert "sweep summary" in out
    table = out[out.index("sweep summary"):]
    assert "val/bleu" in table and all(str(j) in table for j in jobs)


@pytest.fixture(scope="module")
def joblib_search(tmp_path_factory):
    """The USER-JOURNEYS form: hydra/sweeper=optuna on the command line, two trials side by side."""
    root = tmp_path_factory.mktemp("joblib")
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", SEQLAB_CACHE=str(root / "cache"),
               HYDRA_FULL_ERROR="0", PYTHONUNBUFFERED="1")
    # an empty token cache: both trials build it at once (each writes its own temporary file)
    sweep = root / "sweep"
    proc = seqlab(env, "train", "-m", "hydra/sweeper=optuna", "hydra.sweeper.direction=maximize",
                  "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", "hydra.sweeper.sampler.seed=7",
                  "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model.hidden_size=32",
                  "optimizer.lr=tag(log,interval(1e-4,1e-2))", *TINY, f"hydra.sweep.dir={sweep}")
    return {"proc": proc, "sweep": sweep}


@pytest.mark.slow
def test_optuna_with_the_joblib_launcher(joblib_search):
    sweep, out = joblib_search["sweep"], joblib_search["proc"].stdout
    assert "Joblib.Parallel(n_jobs=2" in out
    jobs = trial_dirs(sweep)
    assert len(jobs) == 2
    lrs = {trial_overrides(j)["optimizer.lr"] for j in jobs}
    assert len(lrs) == 2
    results = OmegaConf.load(sweep / "optimization_results.yaml")
    assert str(results.best_params["optimizer.lr"]) in lrs


@pytest.mark.slow
def test_summary_table_with_the_joblib_launcher(joblib_search):
    """The jobs ran in joblib's worker processes; the table is read from their run directories."""
    out = joblib_search["proc"].stdout
    assert "sweep summary" in out
    table = out[out.index("sweep summary"):]
    assert "val/bleu" in table and all(str(j) in table for j in trial_dirs(joblib_search["sweep"]))


@pytest.mark.slow
def test_a_failing_trial_does_not_stop_the_search(cli_env, tmp_path):
    """A trial stopped by a user error (an odd hidden size for a bidirectional encoder) is a failed
    trial: the search goes on, the summary lists it as FAILED, and the results name a good trial."""
    sweep = tmp_path / "sweep"
    proc = seqlab(cli_env, "train", "-m", "hydra/sweeper=optuna", "hydra.sweeper.direction=maximize",
                  "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=1", "hydra.sweeper.sampler.seed=1",
                  "hydra.sweeper.max_failure_rate=1.0", "model.hidden_size=choice(15,16)", *TINY,
                  f"hydra.sweep.dir={sweep}")
    jobs = sorted((p for p in sweep.iterdir() if (p / ".hydra").is_dir()), key=lambda p: int(p.name.split("_")[0]))
    sizes = [trial_overrides(j)["model.hidden_size"] for j in jobs]
    assert len(jobs) == 4 and set(sizes) == {"15", "16"}, sizes  # the seed samples both
    for job, size in zip(jobs, sizes, strict=True):
        assert (job / "metrics.json").is_file() == (size == "16")
    assert "hidden_size" in proc.stderr  # the failed trial's message
    table = proc.stdout[proc.stdout.index("sweep summary"):]
    assert table.count("FAILED") == sizes.count("15")
    assert OmegaConf.load(sweep / "optimization_results.yaml").best_params["model.hidden_size"] == 16
