"""Replaced-token detection (ELECTRA): what is corrupted and scored, that every position trains
the encoder, and that the discriminator is what fine-tuning, resume and export take."""

import json

import torch
from conftest import ENCODER

from lmforge.cli import main
from lmforge.models.config import ModelConfig
from lmforge.models.electra import build_rtd, generator_config
from lmforge.training.objectives import build_objective

SPECIAL = {"pad": 0, "unk": 1, "bos": 2, "eos": 3, "mask": 4, "cls": 5, "sep": 6}


def _model(**over):
    return build_rtd(ModelConfig(**{**ENCODER, "n_head": 4, "d_model": 64, "vocab_size": 60, "tie_embeddings": False,
                                    **over}), 0.25, 50.0)


def test_generator_is_a_quarter_wide_and_reads_the_shared_embedding():
    m = _model()
    g = generator_config(m.cfg, 0.25)
    assert (g.d_model, g.n_head, g.n_layer) == (16, 1, m.cfg.n_layer)
    assert m.generator.embed.tok.tok is m.body.embed.tok  # one table for both
    assert m.gen_head.proj.weight is not m.body.embed.tok.weight  # untied: its own output matrix
    tied = _model(tie_embeddings=True)
    assert tied.gen_head.proj.weight is tied.body.embed.tok.weight


def test_only_masked_positions_are_replaced_and_every_position_is_scored():
    torch.manual_seed(0)
    m = _model()
    obj = build_objective("rtd", SPECIAL, 60, 0.3, seed=1)
    ids = torch.randint(7, 60, (4, 24))
    ids[:, 0] = SPECIAL["cls"]
    inputs, labels = obj.train_batch(ids, step=0, micro=0, rank=0)
    out, loss = m(inputs, labels)
    scored = labels != -100
    assert out.disc_logits.shape == ids.shape and out.gen_logits.shape == (int(scored.sum()), 60)
    assert not out.replaced[~scored].any()  # unmasked tokens are never called replaced
    assert out.replaced[scored].any() and torch.isfinite(loss)
    loss.backward()
    emb = m.body.embed.tok.weight.grad
    # the discriminator's loss reaches the embedding row of every token it read, not only masked ones
    unmasked_only = set(ids[~scored].tolist()) - set(ids[scored].tolist()) - set(inputs[scored].tolist())
    assert unmasked_only and all(emb[t].abs().sum() > 0 for t in unmasked_only)
    assert m.generator.blocks[0].attn.qkv_proj.weight.grad.abs().sum() > 0


def test_rtd_pretraining_end_to_end_then_finetune_takes_the_discriminator(prepared, cfg_for, tmp_path):
    cfg = cfg_for("rtd", **{"model": ENCODER, "pretrain.objective": "rtd", "pretrain.max_steps": 8,
                            "pretrain.eval_every": 4, "pretrain.save_every": 4})
    assert main(["pretrain", str(cfg), "--no-progress"]) == 0
    run = prepared / "rtd" / "pretrain"
    evals = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in x]
    assert {"val_masked_acc", "val_disc_acc", "val_replaced_recall"} <= set(evals[-1]) and "val_ppl" not in evals[-1]
    assert any(k.startswith("emb_cos_rank_") for k in evals[-1])
    summary = json.loads((run / "summary.json").read_text())
    assert "output_cos" in summary["embedding_health"] and summary["non_embedding_params"] < summary["params"]

    from lmforge.models.electra import ReplacedTokenDetection
    from lmforge.models.load import load_checkpoint_model
    from lmforge.training.finetune_config import FinetuneConfig
    from lmforge.training.starts import start_from

    lm, state = load_checkpoint_model(run)
    assert isinstance(lm, ReplacedTokenDetection) and state["rtd"]["generator_ratio"] == 0.25
    start = start_from(FinetuneConfig(init=str(run)), ModelConfig(), ["a", "b"], None)
    for k, v in lm.body.state_dict().items():
        torch.testing.assert_close(start.model.body.state_dict()[k], v)
    reinit = start_from(FinetuneConfig(init=str(run), init_embeddings="reinit"), ModelConfig(), ["a", "b"], None)
    body, fresh = reinit.model.body.state_dict(), lm.body.state_dict()
    assert not torch.equal(body["embed.tok.weight"], fresh["embed.tok.weight"])
    assert all(torch.equal(body[k], fresh[k]) for k in fresh if k != "embed.tok.weight")
    assert "token embeddings re-initialized" in reinit.description


def _train_losses(run) -> dict:
    return {r["step"]: r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if r["kind"] == "train"}


def test_rtd_resume_is_exact(prepared, cfg_for):
    """The replacements are drawn from the step's seeded RNG: 4 steps + resume to 8 == 8 steps."""
    common = {"model": ENCODER, "pretrain.objective": "rtd", "pretrain.decay_steps": 8, "pretrain.eval_every": 4,
              "pretrain.save_every": 4}
    assert main(["pretrain", str(cfg_for("rtd_straight", **common, **{"pretrain.max_steps": 8})), "--no-progress"]) == 0
    assert main(["pretrain", str(cfg_for("rtd_split", **common, **{"pretrain.max_steps": 4})), "--no-progress"]) == 0
    assert main(["pretrain", str(cfg_for("rtd_split", **common, **{"pretrain.max_steps": 8})), "--no-progress",
                 "--resume"]) == 0
    straight, split = _train_losses(prepared / "rtd_straight" / "pretrain"), _train_losses(prepared / "rtd_split" / "pretrain")
    assert set(straight) == set(split) == set(range(1, 9))
    for step in straight:
        assert abs(straight[step] - split[step]) < 1e-4, (step, straight[step], split[step])


def test_rtd_on_a_decoder_is_a_config_error(prepared, cfg_for, capsys):
    cfg = cfg_for("rtd_dec", **{"pretrain.objective": "rtd"})
    assert main(["pretrain", str(cfg), "--no-progress"]) == 2
    assert "pretrain.objective: rtd (replaced-token detection) trains an encoder" in capsys.readouterr().err
