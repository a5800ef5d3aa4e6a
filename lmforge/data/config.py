"""Schema of the ``data`` section: sources, cleaning, filters, dedup, split, augment, packing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from lmforge.data.audio.config import AudioConfig
from lmforge.data.images.config import ImageConfig
from lmforge.kinds import KindName
from lmforge.data.tabular.config import TabularConfig

Format = Literal["auto", "text", "lines", "jsonl", "csv", "tsv", "parquet"]


@dataclass
class SourceConfig:
    """One input: files (glob or fsspec URL) or a built-in corpus."""

    path: Optional[str] = field(default=None, metadata={"help": "file, glob or fsspec URL (s3://, gs://, hdfs://, ...)"})
    builtin: Optional[Literal["stdlib_docstrings", "stdlib_packages"]] = field(
        default=None, metadata={"help": "built-in corpus instead of files: stdlib docstrings (unlabeled) or docstring→package (labeled)"})
    format: Format = field(default="auto", metadata={"help": "'text' = one document per file, 'lines' = one per line"})
    text_field: str = field(default="text", metadata={"help": "field (JSONL/CSV/Parquet column) holding the text"})
    label_field: Optional[str] = field(default=None, metadata={"help": "field holding the label, for labeled data"})
    id_field: Optional[str] = field(default=None, metadata={"help": "field holding a document id (default: file:line)"})
    group_field: Optional[str] = field(default=None, metadata={"help": "field whose value keeps records together in one split"})
    csv_header: bool = field(default=True, metadata={"help": "CSV/TSV first row is a header; if false, columns are named 0, 1, ..."})
    encoding: str = field(default="utf-8", metadata={"help": "text encoding of the files: any Python codec (latin-1, cp1252, utf-16 for format: text, ...)"})
    encoding_errors: Literal["strict", "replace"] = field(default="strict", metadata={"help": "strict: a record that does not decode is rejected (invalid_utf8 / invalid_encoding); replace: decoded with U+FFFD in place of the bad bytes"})

    def validate(self):
        import codecs

        if (self.path is None) == (self.builtin is None):
            yield "path", "set exactly one of 'path' or 'builtin'"
        try:
            name = codecs.lookup(self.encoding).name
        except LookupError:
            yield "encoding", f"unknown encoding {self.encoding!r} (e.g. utf-8, latin-1, cp1252)"
            return
        if name.startswith(("utf-16", "utf-32")) and self.format != "text":
            yield "encoding", (f"{self.encoding} is not ASCII-compatible, so records cannot be split on newlines: "
                               "use format: text (a document per file) or convert the files to UTF-8")


@dataclass
class CleanConfig:
    """Text normalization; each step can be switched off."""

    fix_text: bool = field(default=True, metadata={"help": "repair mojibake and broken Unicode with ftfy"})
    unicode_form: Literal["NFC", "NFKC", "NFD", "NFKD", "none"] = "NFC"
    strip_html: bool = field(default=False, metadata={"help": "remove tags, scripts and styles; unescape entities"})
    control_chars: bool = field(default=True, metadata={"help": "drop control/format characters except newline and tab"})
    whitespace: bool = field(default=True, metadata={"help": "collapse runs of spaces, trim lines, at most one blank line"})
    lowercase: bool = False
    remove_punctuation: bool = False
    remove_stopwords: bool = False
    stopwords: Optional[list[str]] = field(default=None, metadata={"help": "stop-word list (default: a built-in English list)"})
    missing_text: Literal["drop", "fill"] = field(default="drop", metadata={"help": "record with no or empty text"})
    fill_text: str = ""
    missing_label: Literal["drop", "fill"] = field(default="drop", metadata={"help": "labeled source, record without a label"})
    fill_label: str = "unknown"


@dataclass
class FilterConfig:
    """Quality filters; ``null`` disables a rule. Each rejection is counted by reason."""

    web_quality: Literal["auto", "on", "off"] = field(default="auto", metadata={"help": "the repetition filters below (max_dup_line_frac, max_top_ngram_frac, max_dup_ngram_frac) at their defaults: auto = on for unlabeled corpora, off for labeled data (short examples are not web pages); a value you set yourself always applies"})
    min_chars: Optional[int] = field(default=1, metadata={"min": 0})
    max_chars: Optional[int] = field(default=None, metadata={"min": 1})
    min_words: Optional[int] = field(default=1, metadata={"min": 0})
    max_words: Optional[int] = field(default=None, metadata={"min": 1})
    max_dup_line_frac: Optional[float] = field(default=0.3, metadata={"min": 0, "max": 1, "help": "fraction of lines that repeat another line"})
    max_top_ngram_frac: Optional[float] = field(default=0.2, metadata={"min": 0, "max": 1, "help": "chars covered by the most frequent word 2-gram (Gopher)"})
    max_dup_ngram_frac: Optional[float] = field(default=0.15, metadata={"min": 0, "max": 1, "help": "chars in repeated word 5-grams (Gopher)"})
    max_symbol_ratio: Optional[float] = field(default=None, metadata={"min": 0, "help": "('#' + '...') per word (Gopher: 0.1)"})
    min_alpha_word_frac: Optional[float] = field(default=None, metadata={"min": 0, "max": 1, "help": "words with a letter (Gopher: 0.8)"})
    min_mean_word_len: Optional[float] = field(default=None, metadata={"min": 0, "help": "Gopher: 3"})
    max_mean_word_len: Optional[float] = field(default=None, metadata={"min": 0, "help": "Gopher: 10"})
    min_stopwords: Optional[int] = field(default=None, metadata={"min": 0, "help": "at least N of (the, be, to, of, and, that, have, with) (Gopher: 2)"})


@dataclass
class DedupConfig:
    """Exact (hash of normalized text) and near (MinHash + LSH) duplicate removal."""

    exact: bool = True
    near: bool = True
    threshold: float = field(default=0.8, metadata={"min": 0.05, "max": 1.0, "help": "Jaccard similarity of word n-gram sets above which two docs are near duplicates"})
    num_perm: int = field(default=128, metadata={"min": 8, "max": 1024, "help": "MinHash signature length"})
    ngram: int = field(default=5, metadata={"min": 1, "max": 20, "help": "words per shingle"})
    bands: Optional[int] = field(default=None, metadata={"min": 1, "help": "LSH bands (default: chosen for recall ≥ 0.99 at the threshold)"})
    verify: Literal["exact", "signature", "none"] = field(default="exact", metadata={
        "help": "confirm LSH candidates on the true Jaccard of their shingles (exact), the MinHash estimate (signature), or not at all"})
    label_conflicts: Literal["drop_all", "keep_majority", "keep_first"] = field(default="drop_all", metadata={
        "help": "labeled data: copies of one text (exact duplicates after normalization) with different labels are counted and reported; drop_all drops every copy (the safe choice), keep_majority keeps one copy with the most frequent label (drops all on a tie), keep_first keeps the first copy"})


@dataclass
class SplitConfig:
    """Deterministic train/val/test assignment; duplicates and groups never straddle splits."""

    by: Literal["document", "position"] = field(default="document", metadata={"help": "document: whole documents go to one split (below); position: every document is cut, its first 1-val-test of characters to train, then val, then test (one long text, as nanoGPT's shakespeare_char: no leak check, unlabeled data only)"})
    val: float = field(default=0.05, metadata={"min": 0.0, "max": 0.9})
    test: float = field(default=0.05, metadata={"min": 0.0, "max": 0.9})
    stratify: Optional[bool] = field(default=None, metadata={"help": "balance labels across splits (default: when labels exist)"})
    leak_check: bool = field(default=True, metadata={"help": "look for exact and near duplicates across splits, with a MinHash index independent of dedup's"})
    leak_threshold: Optional[float] = field(default=None, metadata={"min": 0.05, "max": 1.0, "help": "true Jaccard at or above which a val/test document leaks (default: dedup.threshold)"})
    on_leak: Literal["move", "fail", "report"] = field(default="move", metadata={"help": "a leaked val/test document (and its group) moves into train, stops the run, or is only reported"})

    def validate(self):
        if self.val + self.test >= 1.0:
            yield "val", f"val + test must leave room for train; got {self.val} + {self.test}"


@dataclass
class AugmentConfig:
    """Opt-in, seeded augmentation of the train split; augmented records are marked."""

    enabled: bool = False
    copies: int = field(default=1, metadata={"min": 1, "max": 20, "help": "augmented variants per train record"})
    word_deletion: float = field(default=0.1, metadata={"min": 0, "max": 1, "help": "probability to delete each word"})
    word_swap: int = field(default=1, metadata={"min": 0, "help": "random adjacent swaps per record"})
    word_insertion: int = field(default=0, metadata={"min": 0, "help": "synonyms inserted at random places"})
    synonym_prob: float = field(default=0.0, metadata={"min": 0, "max": 1, "help": "probability to replace a word that has a synonym"})
    lexicon: Optional[str] = field(default=None, metadata={"help": "JSON file {word: [synonyms]} (default: a small built-in English lexicon)"})
    crop_words: Optional[int] = field(default=None, metadata={"min": 1, "help": "random window of at most N words from longer records"})


@dataclass
class PackConfig:
    """Tokenize and pack into memory-mapped shards."""

    seq_len: int = field(default=512, metadata={"min": 2, "help": "window length for unlabeled (LM) data"})
    add_bos: bool = field(default=False, metadata={"help": "prepend BOS to each document (framing: eos only)"})
    framing: Literal["auto", "eos", "cls_sep"] = field(default="auto", metadata={"help": "how unlabeled windows are framed: eos = documents joined by EOS (what a decoder's fine-tuning appends); cls_sep = every window starts with CLS and documents end with SEP (what an encoder's fine-tuning wraps each example with); auto = cls_sep for model.arch: encoder, else eos"})
    max_length: int = field(default=512, metadata={"min": 2, "help": "labeled data: longest example kept in full (longer ones are truncated and counted)"})
    shard_tokens: int = field(default=1 << 26, metadata={"min": 1024, "help": "tokens per output shard file"})


@dataclass
class DataConfig:
    kind: KindName = field(default="text", metadata={"help": "text: sources/clean/filter/dedup/pack below; image: data.image; tabular: data.tabular; audio: data.audio (split and labels are shared; the kinds are registered in lmforge/kinds.py)"})
    sources: list[SourceConfig] = field(default_factory=list, metadata={"help": "inputs; all are read into one corpus"})
    labels: Optional[list[str]] = field(default=None, metadata={"help": "declared label set; other labels are rejected"})
    strict: bool = field(default=False, metadata={"help": "stop at the first bad record instead of rejecting it"})
    max_record_bytes: int = field(default=8_000_000, metadata={"min": 1, "help": "records longer than this are rejected unread"})
    chunk_mb: int = field(default=32, metadata={"min": 1, "help": "large line-based files are cut into chunks of this size (one work unit each)"})
    clean: CleanConfig = field(default_factory=CleanConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    pack: PackConfig = field(default_factory=PackConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    tabular: TabularConfig = field(default_factory=TabularConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)

    def validate(self):
        from lmforge.kinds import data_problems

        yield from data_problems(self)
        if self.split.by == "position" and self.augment.enabled:
            yield "split.by", "position cuts one text into consecutive pieces; augmentation is for separate records (set augment.enabled: false or split.by: document)"


WEB_QUALITY_KEYS = ("max_dup_line_frac", "max_top_ngram_frac", "max_dup_ngram_frac")


def effective_filter(f: "FilterConfig", labeled: bool) -> "FilterConfig":
    """The filter that runs: ``web_quality`` applied to the repetition rules left at their defaults."""
    from dataclasses import fields, replace

    on = f.web_quality == "on" or (f.web_quality == "auto" and not labeled)
    if on:
        return f
    defaults = {x.name: x.default for x in fields(FilterConfig)}
    return replace(f, **{k: None for k in WEB_QUALITY_KEYS if getattr(f, k) == defaults[k]})
