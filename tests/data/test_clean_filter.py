"""Cleaning and quality filters."""

from hypothesis import given, settings
from hypothesis import strategies as st

from lmforge.data.clean import Cleaner, normalize_whitespace, strip_html
from lmforge.data.config import CleanConfig, FilterConfig
from lmforge.data.document import Document
from lmforge.data.filters import QualityFilter


def test_unicode_repair_and_normalization():
    c = Cleaner(CleanConfig())
    assert c.clean_text("The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows.") == "The Mona Lisa doesn't have eyebrows."
    assert c.clean_text("cafe\u0301") == "caf\u00e9"  # NFC composes
    assert c.stats.extra["unicode_repaired"] >= 1


def test_html_control_chars_and_whitespace():
    c = Cleaner(CleanConfig(strip_html=True))
    out = c.clean_text("<html><script>var x=1;</script><p>Hello&nbsp;<b>world</b></p>\x00\x07  tail</html>")
    assert out == "Hello world\ntail"
    assert strip_html("a &amp; b <!-- hidden -->") == "a & b  "
    assert normalize_whitespace("  a \t b \r\n\n\n\n c  ") == "a b\n\nc"


def test_optional_lowercase_punctuation_stopwords():
    c = Cleaner(CleanConfig(lowercase=True, remove_punctuation=True, remove_stopwords=True))
    assert c.clean_text("The Cat, and THE dog!") == "cat dog"
    c2 = Cleaner(CleanConfig(remove_stopwords=True, stopwords=["cat"]))
    assert c2.clean_text("the cat sat") == "the sat"


def test_empty_after_clean_is_dropped_and_counted():
    c = Cleaner(CleanConfig(strip_html=True))
    assert c(Document(text="<br><br>", id="1")) is None
    assert c.stats.dropped["empty_after_clean"] == 1 and c.stats.read == 1


def test_filters_each_reason():
    f = QualityFilter(FilterConfig(min_chars=5, max_words=50, max_symbol_ratio=0.1, min_alpha_word_frac=0.8,
                                   min_mean_word_len=3, max_mean_word_len=10, min_stopwords=2))
    good = "the cat sat on the mat and looked at the birds with interest"
    assert f.reason(good) is None
    assert f.reason("abc") == "too_short_chars"
    assert f.reason(" ".join(["word"] * 60)) == "too_long_words"
    assert f.reason("line one\nline one\nline one\nline two") == "duplicate_lines"
    assert f.reason("the spam the spam the spam the spam the spam and more") == "top_ngram_repetition"
    assert f.reason("the # of # and # to # with ## here be those") == "symbol_ratio"
    assert f.reason("the and 123 456 789 000 111 222 333") == "alpha_ratio"
    assert f.reason("the and of to a b c d e f g h") == "mean_word_length"
    assert f.reason("cats sitting quietly upon mats looking outward patiently") == "too_few_stopwords"


def test_dup_ngram_rule():
    f = QualityFilter(FilterConfig(max_top_ngram_frac=None, max_dup_ngram_frac=0.15))
    text = "one two three four five six seven " * 3 + "eight nine ten"
    assert f.reason(text) == "duplicate_ngrams"
    assert f.reason("one two three four five six seven eight nine ten eleven") is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=200), max_size=20))
def test_property_clean_and_filter_account_for_every_document(texts):
    c = Cleaner(CleanConfig(strip_html=True, remove_punctuation=True))
    f = QualityFilter(FilterConfig(min_chars=3, max_symbol_ratio=0.5, min_alpha_word_frac=0.5, min_stopwords=1))
    survivors = [d for d in (c(Document(text=t, id=str(i))) for i, t in enumerate(texts)) if d is not None]
    survivors = [d for d in survivors if f(d) is not None]
    for s in (c.stats, f.stats):
        assert s.read == s.kept + sum(s.dropped.values())
    assert c.stats.read == len(texts) and f.stats.kept == len(survivors)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=300))
def test_property_ftfy_shortcut_only_skips_texts_ftfy_leaves_alone(text):
    import ftfy

    from lmforge.data.clean import ftfy_is_noop

    if ftfy_is_noop(text):
        assert ftfy.fix_text(text) == text
