"""Classical baselines: majority class and TF-IDF + logistic regression on the same split."""

from lmforge.evaluation.baselines import baseline_lines, text_baselines


def test_tfidf_logreg_learns_keywords_and_majority_is_the_class_share():
    train = [("good film " * (i % 3 + 1), "pos") for i in range(30)] + [("bad film", "neg") for _ in range(20)]
    val = [("a good one", "pos"), ("so bad", "neg"), ("good", "pos"), ("bad bad", "neg")]
    b = text_baselines([t for t, _ in train], [y for _, y in train], {"val": ([t for t, _ in val], [y for _, y in val]),
                                                                     "test": ([], [])})
    assert b["majority"]["val"]["accuracy"] == 0.5 and "test" not in b["majority"]
    assert b["tfidf_logreg"]["val"]["accuracy"] == 1.0 and b["tfidf_logreg"]["C"] in (1.0, 10.0)
    lines = "\n".join(baseline_lines(b, "val", {"accuracy": 0.75, "f1_macro": 0.7}))
    assert "25.0 points below the best baseline (tfidf_logreg)" in lines


def test_one_label_gives_no_baseline():
    assert text_baselines(["a", "b"], ["x", "x"], {"val": (["a"], ["x"])}) == {}
