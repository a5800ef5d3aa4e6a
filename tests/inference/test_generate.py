"""Sampling filters and the ``lmforge generate`` command end to end."""

import pytest
import torch

from lmforge.cli import main
from lmforge.inference.generate import sample_next


def test_sampling_filters():
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.9]])
    assert all(sample_next(logits, 1.0, 1, None, g).item() == 1 for _ in range(20))  # top-k 1 = greedy
    assert all(sample_next(logits, 1.0, None, 0.01, g).item() == 1 for _ in range(20))  # tiny top-p = greedy
    picks = {sample_next(logits, 1.0, 2, None, g).item() for _ in range(200)}
    assert picks == {1, 3}  # top-k 2 keeps the two best
    assert sample_next(logits, 0.0, None, None, g).item() == 1  # temperature 0 = argmax


def test_generate_command_end_to_end(tiny_decoder, capsys):
    """A trained checkpoint, sampled through the CLI: the prompt comes back with a continuation,
    the same seed gives the same text, and bad flags are all reported at once."""
    args = ["generate", str(tiny_decoder), "--prompt", "the", "--max-new-tokens", "12", "--seed", "3"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert first.startswith("the") and len(first.strip()) > 3
    assert main(args) == 0 and capsys.readouterr().out == first
    assert main(["generate", str(tiny_decoder), "--max-new-tokens", "0", "--top-p", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "--max-new-tokens: must be >= 1" in err and "--top-p: must be <= 1.0" in err


def test_extreme_temperatures_sample_without_nan():
    """A temperature of 1e-137 (found by the server fuzz run) overflowed the logits to inf and
    made the probabilities NaN; now it is as good as greedy, and a huge one still samples."""
    logits = torch.tensor([[1.0, 3.0, 2.0], [0.5, -1.0, 0.7]])
    g = torch.Generator().manual_seed(0)
    assert sample_next(logits, 1e-137, None, None, g).tolist() == [1, 2]
    assert sample_next(logits, 1e-300, 2, 0.5, g).tolist() == [1, 2]
    assert sample_next(logits, 1e6, None, None, g).shape == (2,)


def test_text_stream_holds_back_split_characters_and_stop_prefixes():
    """Byte-level tokens can split a character: its bytes decode as U+FFFD until the last one
    arrives, and nothing half-made is ever sent; a tail that may start a stop string waits too."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from lmforge.inference.generate import TextStream

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(sorted(alphabet))}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    text = "é😀x STOP y"
    ids = tok.encode(text).ids  # one token per byte
    for stop, want in (([], text), (["STOP"], "é😀x ")):
        s = TextStream(tok, [], stop)
        pieces = [s.push(i) for i in ids]
        pieces.append(s.flush())
        assert "".join(pieces) == want and "\ufffd" not in "".join(pieces), pieces
        assert s.text == want


@pytest.mark.parametrize("pos", ["rope", "learned"])
def test_a_left_padded_batch_step_equals_each_sequence_alone(pos):
    """What batched generation relies on: two sequences of different lengths, their caches merged
    with left padding, one step with a padding mask and per-row positions = each alone."""
    import torch.nn.functional as F

    from lmforge.config.schema import build
    from lmforge.models.config import ModelConfig
    from lmforge.models.layers import KVCache
    from lmforge.models.transformer import build_decoder_lm

    torch.manual_seed(0)
    m = build_decoder_lm(build(ModelConfig, dict(arch="decoder", n_layer=2, n_head=2, d_model=32, vocab_size=50,
                                                 max_seq_len=32, pos=pos))).eval()
    a, b = torch.tensor([[1, 2, 3, 4, 5]]), torch.tensor([[7, 8]])
    with torch.no_grad():
        alone = []
        for seq, nxt in ((a, 9), (b, 10)):
            c = KVCache(2)
            m.body(seq, cache=c)
            alone.append(m.head(m.body(torch.tensor([[nxt]]), cache=c))[0, -1])
        ca, cb = KVCache(2), KVCache(2)
        m.body(a, cache=ca)
        m.body(b, cache=cb)
        both = KVCache(2)
        both.k = [torch.cat([x, F.pad(y, (0, 0, 3, 0))]) for x, y in zip(ca.k, cb.k)]
        both.v = [torch.cat([x, F.pad(y, (0, 0, 3, 0))]) for x, y in zip(ca.v, cb.v)]
        mask = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1]])
        out = m.head(m.body(torch.tensor([[9], [10]]), mask, None, both, torch.tensor([[5], [2]])))[:, -1]
    torch.testing.assert_close(out[0], alone[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(out[1], alone[1], atol=1e-6, rtol=0)
