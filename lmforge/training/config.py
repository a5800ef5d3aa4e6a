"""Schema of the ``pretrain`` section."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class PretrainConfig:
    objective: Literal["clm", "mlm", "rtd", "mae"] = field(default="clm", metadata={"help": "clm = next-token (decoder); encoders: mlm = masked tokens, rtd = replaced-token detection (ELECTRA: a small generator fills the masks, the encoder kept learns from every position); images: mae = masked autoencoder of a ViT (the default on data.kind: image)"})
    init: Optional[str] = field(default=None, metadata={"help": "continue pretraining from a checkpoint instead of random weights: an HF BERT-layout folder, 'minilm', or a pretrain folder / checkpoint of ours; its body and shape are used (the model section is ignored) and the data must be tokenized with its tokenizer (tokenizer.path)"})
    data_dir: Optional[str] = field(default=None, metadata={"help": "token shards (default <run>/data/tokens)"})
    out_dir: Optional[str] = field(default=None, metadata={"help": "checkpoints and logs (default <run>/pretrain)"})
    max_steps: int = field(default=1000, metadata={"min": 0, "help": "optimizer steps (0: initialize — e.g. embedding_init — evaluate and save the starting model as step 0)"})
    batch_size: int = field(default=16, metadata={"min": 1, "help": "sequences per micro-batch per process"})
    grad_accum: int = field(default=1, metadata={"min": 1, "help": "micro-batches per optimizer step"})
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = field(default=3e-4, metadata={"min": 0.0})
    min_lr: float = field(default=3e-5, metadata={"min": 0.0, "help": "floor of the decay"})
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    momentum: float = field(default=0.9, metadata={"min": 0.0, "help": "SGD momentum"})
    weight_decay: float = field(default=0.1, metadata={"min": 0.0, "help": "decoupled (AdamW) / L2 (SGD) decay"})
    decay_embeddings: bool = field(default=False, metadata={"help": "also weight-decay embeddings (nanoGPT and HF Trainer do; lmforge's default does not)"})
    decay_norms_biases_embeddings: bool = field(default=False, metadata={"help": "decay every parameter: norms, biases and embeddings too"})
    l1: float = field(default=0.0, metadata={"min": 0.0, "help": "L1 penalty added to the loss (on decayed weights)"})
    l2: float = field(default=0.0, metadata={"min": 0.0, "help": "L2 penalty added to the loss (on decayed weights)"})
    warmup_steps: int = field(default=100, metadata={"min": 0})
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    decay_steps: Optional[int] = field(default=None, metadata={"min": 1, "help": "steps until min_lr (default max_steps)"})
    grad_clip: Optional[float] = field(default=1.0, metadata={"min": 0.0})
    precision: Literal["fp32", "bf16", "fp16"] = field(default="fp32", metadata={"help": "autocast dtype on GPU (CPU runs fp32)"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the model"})
    parallel: Literal["ddp", "fsdp"] = field(default="ddp", metadata={"help": "under torchrun: ddp = whole model on every rank; fsdp = FSDP2, parameters, gradients and optimizer state sharded over the ranks, sharded (DCP) checkpoints that resume on any number of ranks"})
    cpu_offload: bool = field(default=False, metadata={"help": "fsdp on CUDA: keep the parameter/optimizer shards in CPU memory"})
    async_save: bool = field(default=False, metadata={"help": "fsdp: write sharded checkpoints from a background thread while training continues (completed at the next save or at the end)"})
    activation_checkpointing: bool = field(default=False, metadata={"help": "recompute each block's activations in backward (less memory, ~1/3 more compute)"})
    mlm_probability: float = field(default=0.15, metadata={"min": 0.01, "max": 0.9, "help": "share of non-special tokens masked (mlm, and the generator's input for rtd)"})
    rtd_generator_ratio: float = field(default=0.25, metadata={"min": 0.05, "max": 1.0, "help": "rtd: the generator's width as a share of the encoder's (whole heads)"})
    embedding_init: Literal["random", "cooccurrence"] = field(default="random", metadata={"help": "token embeddings before the first step: random, or cooccurrence = PPMI + truncated SVD of the train tokens' co-occurrence within embedding_window positions of one document (seconds; a fresh run from random weights only, not with init)"})
    freeze_embeddings: bool = field(default=False, metadata={"help": "keep the token embedding table fixed while the rest trains (e.g. after embedding_init: cooccurrence, so the objective cannot wear it down)"})
    first_layer: Literal["random", "average"] = field(default="random", metadata={"help": "the first attention layer before the first step: random, or average = near-uniform attention that adds 4 × the mean of the text to every position, so the pooler sees the bag of (co-occurrence) token vectors from step 0 (a fresh run only, not with init)"})
    embedding_window: int = field(default=32, metadata={"min": 1, "help": "embedding_init cooccurrence: how far apart (in tokens, within one document) two tokens count as co-occurring"})
    embedding_max_tokens: int = field(default=5_000_000, metadata={"min": 1000, "help": "embedding_init cooccurrence: train tokens counted at most (memory is about 24 bytes per token per window offset)"})
    rtd_weight: float = field(default=50.0, metadata={"min": 0.0, "help": "rtd: weight of the discriminator's loss against the generator's"})
    mae_mask_ratio: float = field(default=0.75, metadata={"min": 0.05, "max": 0.95, "help": "mae: share of each image's patches hidden from the encoder (and reconstructed)"})
    mae_decoder_width: int = field(default=64, metadata={"min": 8, "help": "mae: width of the light decoder that rebuilds the hidden patches (discarded after pretraining)"})
    mae_decoder_layers: int = field(default=2, metadata={"min": 1, "help": "mae: Transformer blocks of the decoder"})
    mae_decoder_heads: int = field(default=4, metadata={"min": 1, "help": "mae: attention heads of the decoder (must divide its width)"})
    eval_every: int = field(default=200, metadata={"min": 1})
    eval_batches: int = field(default=20, metadata={"min": 1})
    sample_tokens: int = field(default=32, metadata={"min": 0, "help": "decoders: at each validation, continue the start of the first validation window by this many greedy tokens and log the text (metrics.jsonl, the report); 0 = off"})
    early_stopping_patience: Optional[int] = field(default=None, metadata={"min": 1, "help": "stop after N evals without a better val loss"})
    save_every: int = field(default=200, metadata={"min": 1})
    keep_last: int = field(default=2, metadata={"min": 1, "help": "checkpoints kept besides the best"})
    log_every: int = field(default=10, metadata={"min": 1})
    nonfinite: Literal["stop", "skip"] = field(default="stop", metadata={"help": "on a NaN/inf loss: stop with a message, or skip the step"})
    peak_flops: Optional[float] = field(default=None, metadata={"help": "peak FLOP/s of one device for MFU (default: detected for known GPUs, 128e9 on CPU)"})
    threads: Optional[int] = field(default=None, metadata={"min": 1, "help": "CPU threads (default: all cores / processes)"})

    def validate(self):
        if len(self.betas) != 2:
            yield "betas", f"expected two numbers [beta1, beta2]; got {self.betas}"
        for key in ("async_save", "cpu_offload"):
            if getattr(self, key) and self.parallel != "fsdp":
                yield key, f"applies to sharded training only: set parallel: fsdp (now {self.parallel}) or drop {key}"
        if self.embedding_init != "random" and self.init:
            yield "embedding_init", (f"{self.embedding_init} fills a fresh model's embeddings; with init ({self.init}) "
                                     "the checkpoint's embeddings are used: drop one of the two")
        if self.first_layer != "random" and self.init:
            yield "first_layer", (f"{self.first_layer} sets a fresh model's first layer; with init ({self.init}) "
                                  "the checkpoint's layers are used: drop one of the two")
        if self.mae_decoder_width % self.mae_decoder_heads:
            yield "mae_decoder_heads", (f"must divide mae_decoder_width={self.mae_decoder_width}; "
                                        f"got {self.mae_decoder_heads}")
        if self.min_lr > self.lr:
            yield "min_lr", f"must not exceed lr={self.lr}; got {self.min_lr}"
