"""`broker` (also `python -m broker`): the operator's command line, an adapter over the core.

What it promises (exit codes, no tracebacks, no secrets on screen) is what `broker --help`
prints: `parser.DESCRIPTION`. Its modules, top down; each imports only modules below it (a
layers contract in pyproject.toml holds them to it, so there is no import cycle):

    commands  what each command does, through the `Broker` facade; errors end here
    resolve   `broker resolve`: the consumer's path, through `TokenResolver`
    dev       `broker dev`: devstack, the consent site and the worker as child processes
    render    rich tables for people, stable JSON for scripts
    parser    argparse: what a command line may say; no settings, no SDK (`--help` is instant)
    exits     exit codes and UsageError (a leaf: imports nothing of the CLI)
"""

from __future__ import annotations

from collections.abc import Sequence

from broker.cli.parser import build_parser

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from broker.cli.commands import run  # imported late: `--help` must work without settings

    return run(args, parser)
