"""What every ``rackflow`` sub-command shares for talking to the operator."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import typer

__all__ = ["fail", "read_secret"]


def fail(message: str) -> NoReturn:
    """Print an error and exit with status 2 (bad input).

    Args:
        message: What was wrong (never a secret).
    """
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def read_secret(env: str, what: str) -> str:
    """Read a secret from an environment variable, or a hidden prompt on a terminal.

    Args:
        env: The variable's name.
        what: What the secret is, for the prompt and the error (e.g. "BMC password").

    Returns:
        The secret (never empty).

    Raises:
        typer.Exit: Neither set nor given (status 2).
    """
    value = os.environ.get(env) or (
        typer.prompt(what, hide_input=True, default="", show_default=False)
        if sys.stdin.isatty()
        else None
    )
    if not value:
        fail(f"no {what}: set {env} or run interactively")
    return str(value)
