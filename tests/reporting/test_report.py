"""``lmforge report``: the HTML page and its Markdown twin, built from a real run's files, and
checked in a real headless browser (Chromium from Debian's packages)."""

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from conftest import pipeline_config
from lmforge.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    assert main(["run", str(pipeline_config(root, "rep"))]) == 0  # `run` writes the report at its end
    return root / "rep"


def test_the_report_covers_every_stage_and_names_its_sources(run_dir):
    page = (run_dir / "report" / "report.html").read_text()
    md = (run_dir / "report" / "report.md").read_text()
    for title in ("Run", "Data (pretraining corpus)", "Labeled data", "Pretraining", "Fine-tuning and evaluation",
                  "Export", "Lineage"):
        assert f"<h2>{title}</h2>" in page and f"## {title}" in md
    # every figure is embedded (the page opens offline) and the Markdown has the same ones as files
    embedded = re.findall(r'src="data:image/png;base64,', page)
    files = sorted(p.name for p in (run_dir / "report" / "figures").glob("*.png"))
    assert len(embedded) == len(files) >= 8, files
    for name in ("roc_pr_test.png", "reliability_test.png", "confusion_test.png", "pretrain_curves.png"):
        assert name in files
    assert "http://" not in page and "https://" not in page  # nothing fetched from the network
    assert "<th>tokens per word</th>" in page and "Most frequent tokens on train" in page  # tokenizer facts
    assert "Greedy continuation of the same validation prompt" in page  # samples logged at each validation
    assert "Resolved configuration of finetune" in page and "```yaml" in md  # the config that ran
    # lineage: the files the numbers come from, with their hashes
    manifest = run_dir / "data" / "manifest.json"
    import hashlib

    assert hashlib.sha256(manifest.read_bytes()).hexdigest()[:16] in page
    metrics = json.loads((run_dir / "finetune" / "eval" / "test" / "metrics.json").read_text())
    assert 0.0 <= metrics["ece"] <= 1.0 and metrics["roc_curves"] and metrics["calibration"]
    assert f"{metrics['accuracy']:.4g}" in page  # the test accuracy, as the file has it


def test_the_calibration_table_is_right():
    from lmforge.evaluation.metrics import classification_curves

    probs = np.array([[0.92, 0.08], [0.78, 0.22], [0.34, 0.66], [0.45, 0.55]])
    y = np.array([0, 1, 1, 1])  # right, wrong (0.78 sure of the wrong class), right, right
    c = classification_curves(y, probs, ["n", "p"])
    bins = {(b["low"], b["high"]): (b["confidence"], b["accuracy"], b["count"]) for b in c["calibration"]}
    assert bins == {(0.5, 0.6): (0.55, 1.0, 1), (0.6, 0.7): (0.66, 1.0, 1), (0.7, 0.8): (0.78, 0.0, 1),
                    (0.9, 1.0): (0.92, 1.0, 1)}
    assert c["ece"] == pytest.approx((0.45 + 0.34 + 0.78 + 0.08) / 4, abs=1e-6)
    assert c["roc_curves"]["p"]["tpr"][-1] == 1.0 and c["pr_curves"]["p"]["average_precision"] == pytest.approx(1.0)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium; .ci/run installs it)")
def test_the_page_renders_in_a_headless_browser(run_dir, tmp_path):
    page = (run_dir / "report" / "report.html").resolve()
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000"]
    dom = subprocess.run(args + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    shown, total = map(int, re.search(r'data-images="(\d+)/(\d+)"', body).groups())
    assert total >= 8 and shown == total, body  # every figure decoded (natural width > 0)
    assert 'data-errors="0"' in body, body  # no script error on the page
    shot = tmp_path / "report.png"
    subprocess.run(args + ["--window-size=1280,2000", f"--screenshot={shot}", page.as_uri()], capture_output=True,
                   timeout=120)
    import matplotlib.image

    img = matplotlib.image.imread(shot)
    assert img.shape[:2] == (2000, 1280)
    assert img[:80].mean() < img[400:].mean()  # the dark header band, then the light page
    assert img[400:].std() > 0.05  # tables and figures drawn, not a blank page


def test_report_on_a_missing_folder_is_a_usage_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err
