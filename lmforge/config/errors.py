"""The one exception a bad configuration raises: every problem at once, each with its key."""

from __future__ import annotations

from lmforge.errors import LmforgeError


class ConfigError(LmforgeError, ValueError):
    """Raised with a list of problems; each problem is ``(key_path, message)``."""

    exit_code = 2

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None):
        self.problems = problems
        self.source = source
        where = " (from --set)" if source == "--set" else f" in {source}" if source else ""
        lines = [f"{len(problems)} problem(s) in the configuration{where}:"]
        lines += [f"  - {key or '<root>'}: {msg}" for key, msg in problems]
        super().__init__("\n".join(lines))
