"""What every ``rackflow`` sub-command shares for talking to the operator."""

from __future__ import annotations

from typing import NoReturn

import typer

__all__ = ["fail"]


def fail(message: str) -> NoReturn:
    """Print an error and exit with status 2 (bad input).

    Args:
        message: What was wrong (never a secret).
    """
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)
