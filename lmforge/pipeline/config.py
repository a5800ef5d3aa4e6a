"""Schema of the ``pipeline`` section (``lmforge run``): which stages run and what the last ones do."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

STAGES = ("data", "labeled_data", "pretrain", "finetune", "tune", "distill", "export", "serve")


@dataclass
class PipelineConfig:
    stages: Optional[list[str]] = field(default=None, metadata={"help": f"stages to run, in this order of {list(STAGES)}; default: every stage the config declares (a data section with sources, a pretrain/finetune/tune/distill section, export and serve after training)"})
    export: Literal["onnx", "onnx_int8", "none"] = field(default="onnx_int8", metadata={"help": "export stage: a verified ONNX folder of the last trained model (finetune, else pretrain), with or without int8"})
    keep_previous: Optional[int] = field(default=None, metadata={"min": 0, "help": "a stage that must start over (changed config, inputs or upstream; --force) first moves its earlier output to <run>/previous/<stage>-<time>/; this many are kept per stage, the oldest deleted (each deletion printed); unset = keep all"})
    smoke: Optional[str] = field(default=None, metadata={"help": "serve stage: the text of one smoke request (default: a classification smoke with the first test text, or a generation from 'The')"})

    def validate(self):
        if self.stages is not None:
            bad = [s for s in self.stages if s not in STAGES]
            if bad:
                yield "stages", f"unknown stage(s) {bad}; choose from {list(STAGES)}"
            elif not self.stages:
                yield "stages", "name at least one stage, or leave it unset for every declared stage"
