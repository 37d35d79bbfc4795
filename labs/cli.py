"""The command-line conventions every lab shares (``labs.rate_sweep``, ``labs.diffusion_sweep``).

A lab is a settings dataclass with a ``validate()`` method and a ``run_sweep(cfg)`` function.
This module gives them the same command line: one-line errors naming the bad value, list and
scalar flags parsed with the flag's name in the message, a ``--config`` file (JSON or TOML, keys
as in the dataclass; flags override it), the executor flags of :mod:`labs.executor`, and a
``main`` that turns a ``ValueError`` into exit status 2 and an interrupt into 130 with a hint to
``--resume``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np

__all__ = ["LabParser", "csv_list", "scalar", "add_run_flags", "add_executor_flags", "load_settings_file", "config_from_args",
           "run_main", "check_run_settings", "json_default"]


class LabParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``<lab>: error: <message>``, exit status 2."""

    def error(self, message):
        name = self.prog.split()[-1].rsplit(".", 1)[-1]
        self.exit(2, f"{name}: error: {message}\n")


def csv_list(kind, name):
    """A flag type: a comma-separated list of ``kind`` values; errors name the flag and the item."""
    def parse(text):
        items = [s.strip() for s in text.split(",") if s.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"empty list for {name}")
        out = []
        for s in items:
            try:
                out.append(kind(s))
            except ValueError:
                raise argparse.ArgumentTypeError(f"{name}: {s!r} is not a valid {kind.__name__}") from None
        return out

    return parse


def scalar(kind, name):
    """A flag type: one ``kind`` value; the error names the flag and the text."""
    def parse(text):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: {text!r} is not a valid {kind.__name__}") from None

    return parse


def add_run_flags(parser: argparse.ArgumentParser, out_default: str, quick_help: str) -> None:
    """The flags every lab shares: ``--config``, ``--out``, ``--resume``, ``--quick``,
    ``--progress`` and the executor flags (:func:`add_executor_flags`)."""
    a = parser.add_argument
    a("--config", help="a .json or .toml file holding any of these settings (flags override it)")
    a("--out", help=f"output folder (default {out_default})")
    a("--resume", action="store_true", default=None, help="keep finished cells in --out and run the rest")
    a("--quick", action="store_true", default=None, help=quick_help)
    a("--progress", action=argparse.BooleanOptionalAction, default=None,
      help="progress bar (default: on when stderr is a terminal)")
    add_executor_flags(parser)


def add_executor_flags(parser: argparse.ArgumentParser) -> None:
    """``--executor``, ``--address``, ``--workers`` (see :mod:`labs.executor`)."""
    a = parser.add_argument
    a("--executor", help="local (default: one cell after another here) or dask")
    a("--address", help="dask: scheduler address of an existing cluster, e.g. tcp://host:8786")
    a("--workers", type=scalar(int, "--workers"),
      help="dask: start a local cluster of N worker processes (default: one per CPU core)")


def load_settings_file(path: str, config_cls) -> dict:
    """Settings from a ``.json`` or ``.toml`` file, keys as in the dataclass ``config_cls``."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"config file {path!r} does not exist")
    text = p.read_text()
    if p.suffix == ".toml":
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"config file {path!r} is not valid TOML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"config file {path!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {path!r} must hold a mapping of settings")
    unknown = sorted(set(data) - {f.name for f in fields(config_cls)})
    if unknown:
        raise ValueError(f"config file {path!r} has unknown setting(s): {', '.join(unknown)}")
    return data


def config_from_args(parser: argparse.ArgumentParser, config_cls, argv=None):
    """The validated settings: defaults, then the ``--config`` file, then the flags given."""
    args = parser.parse_args(argv)
    data = load_settings_file(args.config, config_cls) if getattr(args, "config", None) else {}
    for f in fields(config_cls):
        v = getattr(args, f.name, None)
        if v is not None:
            data[f.name] = v
    try:
        cfg = config_cls(**data)
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    return cfg.validate()


def run_main(name: str, make_config, run) -> int:
    """``run(make_config())``: exit status 0; 2 with a one-line error on bad settings; 130 on an
    interrupt (finished cells are kept: ``--resume`` completes the sweep).

    The command line opts in to the allocator tuning of :mod:`samplers.allocator` first (the
    same numbers, faster steps; ``LAB_MALLOC=system`` keeps glibc's defaults)."""
    try:
        import samplers

        samplers.allocator.tune()
        run(make_config())
    except ValueError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted; finished cells are kept, run again with --resume to complete",
              file=sys.stderr)
        return 130
    return 0


def check_run_settings(cfg) -> None:
    """The settings every lab shares, checked alike: ``dtype``, ``device`` and the executor's
    (``executor``, ``address``, ``workers``); a ``ValueError`` names the bad value."""
    if cfg.dtype not in ("float64", "float32"):
        raise ValueError(f"unknown dtype {cfg.dtype!r}; known: float64, float32")
    if cfg.device not in ("cpu", "cuda") and not str(cfg.device).startswith("cuda:"):
        raise ValueError(f"unknown device {cfg.device!r}; known: cpu, cuda, cuda:N")
    from labs.executor import check_executor

    check_executor(cfg.executor, cfg.address, cfg.workers, cfg.device)


def json_default(o):
    """``json.dumps`` fallback: numpy scalars as numbers, anything else as its string."""
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)
