"""What a data step dropped, said the same way for every data kind (text, image, tabular).

Every kind prints, with or without ``--no-progress`` (these are results, not progress):

* one line per step that dropped something: ``[data]   <step>: read → kept (share dropped: reasons)``;
* a warning on stderr when one step drops more than ``DROP_WARNING`` of its input, with a hint;
* one closing line: ``[data] kept K of N records; dropped D (reasons); every dropped record: <path>``.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

DROP_WARNING = 0.2  # a step that drops more than this share of what it read is a console warning


def say(msg: str) -> None:
    print(f"[data] {msg}", flush=True)


def warn(msg: str) -> None:
    print(f"[data] warning: {msg}", file=sys.stderr, flush=True)


def _reasons(dropped: Counter) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in dropped.most_common(5)) + (
        f", {len(dropped) - 5} more reasons" if len(dropped) > 5 else "")


def say_step(step: str, read: int, kept: int, dropped: Counter, where: Path | str, hint: str = "") -> None:
    """The line of one step that dropped records, and the warning when it dropped too many."""
    n = sum(dropped.values())
    if not n:
        return
    share = n / max(1, read)
    say(f"  {step}: {read:,} → {kept:,} ({share:.0%} dropped: {_reasons(dropped)})")
    if share > DROP_WARNING:
        warn(f"the {step} step dropped {share:.0%} of its {read:,} records ({_reasons(dropped)})"
             + (f"; {hint}" if hint else "") + f"; each one is in {where}")


def say_total(read: int, kept: int, dropped: Counter, where: Path | str, unit: str = "records") -> None:
    """The closing line of a data preparation."""
    n = sum(dropped.values())
    say(f"kept {kept:,} of {read:,} {unit}" + (f"; dropped {n:,} ({_reasons(dropped)}); every dropped one: {where}"
                                               if n else "; nothing dropped"))
