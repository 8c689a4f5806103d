"""The `crmsync` command."""

from crmsync.cli.commands import main

__all__ = ["main"]
