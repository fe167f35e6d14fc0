"""Errors that reach the user as one clear line: the file, the problem, the fix."""

from __future__ import annotations

from pathlib import Path


class BraggflowError(Exception):
    """Base class: the CLI prints ``str(err)`` on one line and exits with status 2."""


class InputError(BraggflowError):
    """A bad input file or value: names the file (or config key), the problem and the fix."""

    def __init__(self, where: str | Path, problem: str, fix: str) -> None:
        self.where, self.problem, self.fix = str(where), problem, fix
        super().__init__(f"{where}: {problem} (fix: {fix})")


class ConfigError(BraggflowError):
    """An invalid config value: names the key, the bad value and what is allowed."""


class MissingToolError(BraggflowError):
    """An external tool (CrystFEL, Cheetah, ...) is absent: names tool, config key and built-in alternative."""

    def __init__(self, tool: str, config_key: str, alternative: str) -> None:
        super().__init__(
            f"{tool} not found on PATH (config key '{config_key}'); load it (e.g. 'module load crystfel') "
            f"or set {config_key}: {alternative} to use the built-in engine"
        )
