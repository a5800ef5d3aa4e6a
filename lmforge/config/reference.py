"""The README's configuration reference, generated from the schema (``python -m
lmforge.config.reference`` rewrites it; a test keeps the README in step)."""

from __future__ import annotations

import sys
from pathlib import Path

from lmforge.config.experiment import ExperimentConfig
from lmforge.config.schema import describe

HEADER = "| key | type | default | meaning |"
README = Path(__file__).resolve().parents[2] / "README.md"


def reference_table() -> str:
    """One row per key; ``labeled_data`` has the keys of ``data`` and gets a single row."""
    def esc(x) -> str:
        return str(x).replace("|", "\\|")

    rows = [HEADER, "|---|---|---|---|"]
    for key, tp, default, help_ in describe(ExperimentConfig):
        if key.startswith("labeled_data."):
            if key == "labeled_data.sources":
                rows.append("| `labeled_data.*` | section | unset | a second, labeled dataset with every `data.*` key "
                            "(prepared into runs/<name>/labeled/data; fine-tuning reads its splits) |")
            continue
        rows.append(f"| `{key}` | {esc(tp)} | `{default!r}` | {esc(help_)} |")
    return "\n".join(rows)


def current_table(text: str) -> tuple[int, int]:
    start = text.index(HEADER)
    return start, text.index("\n\n", start)


def main() -> int:
    text = README.read_text()
    start, end = current_table(text)
    README.write_text(text[:start] + reference_table() + text[end:])
    print(f"configuration reference rewritten in {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
