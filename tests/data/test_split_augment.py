"""Split assignment (fractions, stratification, groups, determinism) and augmentation."""

import numpy as np

from lmforge.data.augment import Augmenter
from lmforge.data.config import AugmentConfig
from lmforge.data.split import TEST, TRAIN, VAL, assign_splits, components


def _setup(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    exact = rng.integers(1, 1 << 63, size=n, dtype=np.uint64)
    labels = np.array(["a"] * (n * 8 // 10) + ["b"] * (n - n * 8 // 10))
    return exact, labels


def test_fractions_and_stratification():
    exact, labels = _setup()
    kept = np.ones(len(exact), bool)
    comp = np.arange(len(exact))
    split = assign_splits(kept, comp, exact, labels, 0.1, 0.2, True, seed=5)
    assert (split == VAL).sum() == 100 and (split == TEST).sum() == 200
    for lab, n in (("a", 800), ("b", 200)):
        m = labels == lab
        assert (split[m] == VAL).sum() == round(0.1 * n)
        assert (split[m] == TEST).sum() == round(0.2 * n)


def test_deterministic_and_seed_dependent():
    exact, labels = _setup()
    kept = np.ones(len(exact), bool)
    comp = np.arange(len(exact))
    a = assign_splits(kept, comp, exact, labels, 0.1, 0.1, False, seed=1)
    assert np.array_equal(a, assign_splits(kept, comp, exact, labels, 0.1, 0.1, False, seed=1))
    assert not np.array_equal(a, assign_splits(kept, comp, exact, labels, 0.1, 0.1, False, seed=2))


def test_groups_and_duplicate_clusters_never_straddle():
    n = 600
    exact, labels = _setup(n)
    kept = np.ones(n, bool)
    kept[::7] = False  # dropped duplicates
    group = np.array([(i // 6) + 1 for i in range(n)], dtype=np.uint64)  # groups of 6
    dup_root = np.arange(n)
    dup_root[1::50] = 0  # a duplicate cluster spanning many groups
    comp = components(n, dup_root, group, kept)
    split = assign_splits(kept, comp, exact, labels, 0.2, 0.2, False, seed=3)
    for g in np.unique(group):
        s = set(split[(group == g) & kept].tolist())
        assert len(s) <= 1, f"group {g} straddles splits {s}"
    assert len(set(split[(dup_root == 0) & kept].tolist())) == 1
    assert (split[~kept] == -1).all()
    assert {TRAIN, VAL, TEST} <= set(split[kept].tolist())


def test_augment_is_seeded_and_changes_text():
    cfg = AugmentConfig(enabled=True, word_deletion=0.2, word_swap=2, word_insertion=1, synonym_prob=0.5,
                        crop_words=8)
    a = Augmenter(cfg, seed=1)
    text = "this is a good movie with a happy end and a big story about an old actor"
    out = a.augment(text, key=3, copy=0)
    assert out == Augmenter(cfg, seed=1).augment(text, key=3, copy=0)
    assert out != a.augment(text, key=3, copy=1)
    assert out != text and len(out.split()) <= 9


def test_custom_lexicon(tmp_path):
    (tmp_path / "lex.json").write_text('{"cat": ["feline"]}')
    a = Augmenter(AugmentConfig(enabled=True, word_deletion=0, word_swap=0, synonym_prob=1.0,
                                lexicon=str(tmp_path / "lex.json")), seed=0)
    assert a.augment("the cat sat", 0, 0) == "the feline sat"
