"""``seqlab <verb> [hydra overrides]``: a small dispatcher in front of the Hydra entry points."""

from __future__ import annotations

import re
import sys

VERBS = {
    "train": ("seqlab.train", "train a model (seqlab train task=translation model=lstm_attn)"),
    "eval": ("seqlab.evaluate", "evaluate a checkpoint (seqlab eval ckpt_path=... split=val)"),
    "predict": ("seqlab.predict", "run a checkpoint on inputs (seqlab predict ckpt_path=... input=...)"),
}

USAGE = """usage: seqlab <verb> [overrides ...] [--help] [-m]

verbs:
{verbs}

Each verb is a Hydra application: `seqlab <verb> --help` lists its config groups and options,
`seqlab train -m model=gru,lstm_attn` runs a sweep. Examples:
  seqlab train                                  # translator on bundled Multi30k (de->en)
  seqlab train model=gru_attn trainer=debug     # a one-minute check
  seqlab eval ckpt_path=outputs/.../checkpoints/best.pt decode.strategy=beam
  seqlab predict ckpt_path=outputs/.../checkpoints/best.pt input="ein mann fährt fahrrad ."
"""


_KEY = re.compile(r"^[+~]{0,2}[A-Za-z_][\w.@/-]*=")


def quote_free_text(arg: str) -> str:
    """``input=ein mann fährt .`` (the shell removed the quotes) becomes ``input='ein mann fährt .'``,
    so that free text with spaces reaches Hydra as one string value."""
    m = _KEY.match(arg)
    if not m:
        return arg
    value = arg[m.end():]
    if not any(c.isspace() for c in value) or value[:1] in ("'", '"'):
        return arg
    return m.group(0) + "'" + value.replace("'", "\\'") + "'"


# Hydra plugins a command line can ask for, and what installs them (pyproject.toml's `sweep` extra)
PLUGINS = {
    "hydra/sweeper=optuna": ("hydra_plugins.hydra_optuna_sweeper", "pip install -e '.[sweep]'"),
    "hparams_search=": ("hydra_plugins.hydra_optuna_sweeper", "pip install -e '.[sweep]'"),
    "hydra/launcher=joblib": ("hydra_plugins.hydra_joblib_launcher", "pip install -e '.[sweep]'"),
    "hydra/launcher=submitit": ("hydra_plugins.hydra_submitit_launcher", "pip install hydra-submitit-launcher"),
}


def missing_plugin(args: list[str]) -> str | None:
    """A message naming the install command when an argument asks for a Hydra plugin that is not
    installed (Hydra's own message only lists the options it has)."""
    from importlib.util import find_spec

    for arg in args:
        for prefix, (module, install) in PLUGINS.items():
            if arg.lstrip("+~").startswith(prefix) and find_spec(module) is None:
                return f"{arg} needs a Hydra plugin that is not installed ({module}): {install}"
    return None


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbs = "\n".join(f"  {name:<8} {help_}" for name, (_, help_) in VERBS.items())
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE.format(verbs=verbs))
        sys.exit(0 if argv else 2)
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"seqlab: unknown verb {verb!r}; choose one of: {', '.join(VERBS)}", file=sys.stderr)
        sys.exit(2)
    if problem := missing_plugin(rest):
        print(f"seqlab: error: {problem}", file=sys.stderr)
        sys.exit(2)
    import importlib

    module = importlib.import_module(VERBS[verb][0])
    sys.argv = [f"seqlab {verb}", *map(quote_free_text, rest)]
    module.main()


if __name__ == "__main__":
    main()
