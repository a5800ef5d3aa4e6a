"""Image and table models exported to verified ONNX (fp32 + int8): the graph takes raw pixels (the
normalization inside) or preprocessed rows, equals PyTorch to 1e-4, and the folder says how to use it."""

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from lmforge.cli import main  # noqa: E402
from lmforge.inference.ort import session  # noqa: E402


def test_image_model_exports_with_normalization_inside(image_model, tmp_path, capsys):
    test = np.load(image_model / "data" / "images" / "test.images.npy")
    labels = np.load(image_model / "data" / "images" / "test.labels.npy")
    np.savez(tmp_path / "test.npz", images=test[:, 0], labels=labels)
    out = tmp_path / "onnx"
    assert main(["export", str(image_model / "finetune"), "--quantize", "int8", "--file", str(tmp_path / "test.npz"),
                 "--out", str(out)]) == 0
    rec = json.loads((out / "export.json").read_text())
    assert rec["kind"] == "image" and rec["inputs"] == {"pixels": "uint8 [batch, 1, 8, 8]"}
    assert rec["verification"]["max_abs_diff"] <= 1e-4 and len(rec["verification"]["checks"]) == 4
    q = rec["quality"]
    assert q["examples"] == len(test) and q["onnx_fp32"]["accuracy"] == q["torch_fp32"]["accuracy"]
    assert abs(q["onnx_int8"]["delta_points"]) <= 5.0  # 60 images: one image is 1.7 points
    task = json.loads((out / "lmforge_task.json").read_text())
    assert task["kind"] == "image" and task["in_shape"] == [1, 8, 8] and task["normalize"]["kind"]
    # raw uint8 pixels in, the fine-tuning run's own test accuracy out
    logits = session(out / "model.onnx").run(None, {"pixels": test})[0]
    summary = json.loads((image_model / "finetune" / "summary.json").read_text())
    assert np.mean(logits.argmax(1) == labels) == pytest.approx(summary["results"]["test"]["accuracy"])
    card = (out / "README.md").read_text()
    assert "pipeline_tag: image-classification" in card and "normalization is in the graph" in card
    assert "ONNX (image)" in capsys.readouterr().out


def test_table_model_exports_with_its_preprocessor(table_model, tmp_path):
    import palmerpenguins

    frame = palmerpenguins.load_penguins().dropna(subset=["species"]).head(40)
    frame.to_csv(tmp_path / "rows.csv", index=False)
    out = tmp_path / "onnx"
    assert main(["export", str(table_model / "finetune" / "best"), "--file", str(tmp_path / "rows.csv"),
                 "--out", str(out)]) == 0
    rec = json.loads((out / "export.json").read_text())
    assert set(rec["inputs"]) == {"x", "cat"} and rec["output"] == "logits"  # tab_transformer reads category codes
    assert rec["verification"]["max_abs_diff"] <= 1e-4 and rec["quality"]["examples"] == 40
    assert (out / "preprocessor").is_dir() and json.loads((out / "lmforge_task.json").read_text())["kind"] == "tabular"


def test_hf_format_is_refused_for_array_models(image_model, capsys):
    assert main(["export", str(image_model / "finetune"), "--format", "hf"]) != 0
    assert "image and table models export to onnx" in capsys.readouterr().err
