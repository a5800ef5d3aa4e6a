"""``lmforge evaluate`` on a language model (perplexity) and its usage errors; the classifier path is
exercised end to end in tests/recipes/test_finetune.py."""

import json
import math

from lmforge.cli import main


def test_perplexity_of_a_pretrained_decoder(tiny_decoder, prepared, tmp_path, capsys):
    data = prepared / "data" / "data"
    assert main(["evaluate", str(tiny_decoder), "--data-dir", str(data), "--split", "val",
                 "--out", str(tmp_path / "ppl")]) == 0
    assert "| perplexity |" in capsys.readouterr().out
    m = json.loads((tmp_path / "ppl" / "metrics.json").read_text())
    assert m["perplexity"] == math.exp(m["loss"]) and m["tokens"] > 0
    assert 1 < m["perplexity"] < 400  # below uniform over the 300-token vocabulary: it learned something


def test_usage_errors_are_reported_with_their_flags(tiny_decoder, tmp_path, capsys):
    assert main(["evaluate", str(tiny_decoder)]) == 2
    assert "perplexity needs --data-dir" in capsys.readouterr().err
    assert main(["evaluate", str(tiny_decoder), "--batch-size", "0", "--max-length", "2"]) == 2
    err = capsys.readouterr().err
    assert "--batch-size: must be >= 1" in err and "--max-length: must be >= 4" in err
    assert main(["evaluate", str(tmp_path / "missing")]) == 1
    assert f"{tmp_path / 'missing'}: does not exist" in capsys.readouterr().err
