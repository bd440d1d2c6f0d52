"""Command-line helpers the examples share: which flags were given, settings restored on resume,
flag checks that run before any work starts, and the command line that results files record."""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._backend import startup_backend as startup_backend  # the examples' --backend default


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` that shows each option's default, except a ``None`` one: such an option's help says
    what no value means (``(default: shots)``), which ``(default: None)`` would only contradict."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    """Adds ``--backend torch|jax`` to ``parser``, defaulting to :func:`startup_backend` (the
    examples' shared option)."""
    parser.add_argument(
        "--backend",
        choices=("torch", "jax"),
        default=startup_backend(),
        help="default: L2L_BACKEND if set, else torch where installed, else jax",
    )


def flag(name: str) -> str:
    """``"meta_batch"`` -> ``"--meta-batch"``."""
    return "--" + name.replace("_", "-")


def explicit_options(parser: argparse.ArgumentParser, argv: list[str] | None) -> set[str]:
    """The destinations of the options given on the command line ``argv`` (default ``sys.argv[1:]``),
    whatever their values: ``--iterations 8`` counts even when 8 is the default.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> _ = parser.add_argument("--seed", type=int, default=0)
        >>> _ = parser.add_argument("--lr", type=float, default=0.1)
        >>> sorted(explicit_options(parser, ["--seed", "0"]))
        ['seed']
    """
    saved_defaults = {action: action.default for action in parser._actions}
    saved_parser_defaults = dict(parser._defaults)
    try:
        for action in parser._actions:  # argparse has no public "was this given" query
            action.default = argparse.SUPPRESS
        parser._defaults.clear()
        given, _ = parser.parse_known_args(argv)
    finally:
        for action, default in saved_defaults.items():
            action.default = default
        parser._defaults.update(saved_parser_defaults)
    return set(vars(given))


def restore_arguments(args: argparse.Namespace, saved: dict[str, Any], explicit: set[str]) -> None:
    """On ``--resume``: every setting saved in the folder's ``config.json`` that was not given on the
    command line is taken from the folder (so ``--resume --out DIR`` alone continues the run).
    Settings given explicitly stay; the results folder then refuses those that may not change."""
    for key, value in saved.items():
        if key not in explicit and hasattr(args, key):
            setattr(args, key, value)


def parse_run_arguments(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    quick: dict[str, Any],
    default_out: Callable[[argparse.Namespace], str],
) -> argparse.Namespace:
    """Parses ``argv`` for an example with a results folder: ``--quick`` changes the defaults to
    ``quick`` (flags given still win); ``--out`` defaults to ``default_out(args)``; with
    ``--resume``, every setting saved in the folder's ``config.json`` that was not given comes from
    the folder (so ``--resume --out DIR`` alone continues the run)."""
    from ._run import RunFolder

    chosen, _ = parser.parse_known_args(argv)
    if chosen.quick:
        parser.set_defaults(**quick)
    args = parser.parse_args(argv)
    args.out = args.out or default_out(args)
    if args.resume:
        try:
            saved = RunFolder.saved_config(args.out)
        except FileNotFoundError:
            saved = {}  # RunFolder refuses the resume with the folder's name
        restore_arguments(args, saved, explicit_options(parser, argv))
    return args


def check_int(args: argparse.Namespace, name: str, minimum: int, why: str = "") -> None:
    """Refuses ``args.<name>`` below ``minimum`` (or a non-int) with a message naming the flag."""
    value = getattr(args, name)
    values = value if isinstance(value, list) else [value]
    for item in values:
        if isinstance(item, bool) or not isinstance(item, int) or item < minimum:
            reason = f" ({why})" if why else ""
            raise SystemExit(f"{flag(name)} must be an integer >= {minimum}{reason}, got {value!r}")


def check_float(args: argparse.Namespace, name: str, minimum: float = 0.0, strict: bool = False) -> None:
    """Refuses a non-finite ``args.<name>``, or one below (``strict``: at or below) ``minimum``."""
    value = getattr(args, name)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise SystemExit(f"{flag(name)} must be a finite number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        relation = ">" if strict else ">="
        raise SystemExit(f"{flag(name)} must be {relation} {minimum:g}, got {value!r}")


def command_line(argv=None) -> str:
    """The command that ran this script, shell-quoted: ``python script.py ARGS`` (``argv``: the
    arguments given to the script's ``main``, default ``sys.argv[1:]``), for results files."""
    words = [Path(sys.executable).name, sys.argv[0], *(sys.argv[1:] if argv is None else argv)]
    return " ".join(shlex.quote(str(word)) for word in words)
