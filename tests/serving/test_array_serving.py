"""``lmforge serve`` on image and table models (torch and ONNX backends): /v1/classify takes base64
images, multipart uploads or rows by column name, answers what ``lmforge predict`` answers on the
same inputs, says every bad cell, and names the field of every mistake."""

import base64
import io
import json

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("onnxruntime")

from fastapi.testclient import TestClient  # noqa: E402

from lmforge.cli import main  # noqa: E402
from lmforge.serving.app import build_app  # noqa: E402
from lmforge.serving.config import ServeConfig  # noqa: E402


def png(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img[0]).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def image_export(image_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("imgexport") / "onnx"
    assert main(["export", str(image_model / "finetune"), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def pngs(image_model, tmp_path_factory):
    """Six test images as PNG files and what ``lmforge predict`` says about them."""
    folder = tmp_path_factory.mktemp("pngs")
    test = np.load(image_model / "data" / "images" / "test.images.npy")[:6]
    for i, img in enumerate(test):
        (folder / f"img{i}.png").write_bytes(png(img))
    out = folder.parent / "pred.jsonl"
    assert main(["predict", str(image_model / "finetune"), "--file", str(folder), "--out", str(out)]) == 0
    preds = {json.loads(line)["id"].rsplit("/", 1)[-1]: json.loads(line) for line in out.read_text().splitlines()}
    return folder, [preds[f"img{i}.png"] for i in range(6)]


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_images_as_base64_and_multipart_match_predict(image_model, image_export, pngs, backend):
    folder, want = pngs
    model = image_export if backend == "onnx" else image_model / "finetune"
    files = [(folder / f"img{i}.png").read_bytes() for i in range(6)]
    with TestClient(build_app(ServeConfig(model=str(model), backend=backend, max_wait_ms=5))) as c:
        info = c.get("/v1/model").json()
        assert info["kind"] == "image" and info["input"]["height"] == 8 and info["backend"] == backend
        res = c.post("/v1/classify", json={"images": [base64.b64encode(f).decode() for f in files[:3]]})
        assert res.status_code == 200, res.text
        up = c.post("/v1/classify", files=[("images", (f"img{i}.png", files[i], "image/png")) for i in range(3, 6)])
        assert up.status_code == 200, up.text
        got = res.json()["results"] + up.json()["results"]
        assert [g["label"] for g in got] == [w["label"] for w in want]
        assert all(abs(g["score"] - w["score"]) < 1e-4 for g, w in zip(got, want))
        data_url = "data:image/png;base64," + base64.b64encode(files[0]).decode()
        assert c.post("/v1/classify", json={"images": [data_url]}).json()["results"][0]["label"] == want[0]["label"]


@pytest.mark.parametrize("body, status, field", [
    ({"images": ["not base64!"]}, 422, "images.0"),
    ({"images": [base64.b64encode(b"GIF89a but not really").decode()]}, 422, "images.0"),
    ({"images": []}, 422, "images"), ({"texts": ["a text"]}, 422, "images"),
    ({"images": ["x"] * 9}, 422, "images")])
def test_image_mistakes_name_the_field(image_model, body, status, field):
    with TestClient(build_app(ServeConfig(model=str(image_model / "finetune"), max_texts=8))) as c:
        r = c.post("/v1/classify", json=body)
        assert r.status_code == status and r.json()["error"]["field"] == field, r.text
        r = c.post("/v1/classify", files=[("images", ("a.png", b"\x89PNG broken", "image/png"))])
        assert r.status_code == 422 and r.json()["error"]["field"] == "images.0"


def test_table_rows_by_column_name_match_predict_and_say_bad_cells(table_model, tmp_path):
    import palmerpenguins

    frame = palmerpenguins.load_penguins().dropna().head(5)
    cols = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"]
    frame[cols].to_csv(tmp_path / "rows.csv", index=False)
    out = tmp_path / "pred.jsonl"
    assert main(["predict", str(table_model / "finetune"), "--file", str(tmp_path / "rows.csv"), "--out", str(out)]) == 0
    want = [json.loads(line) for line in out.read_text().splitlines()]
    rows = json.loads(frame[cols].to_json(orient="records"))
    assert main(["export", str(table_model / "finetune"), "--out", str(tmp_path / "onnx")]) == 0
    for model, backend in ((table_model / "finetune", "torch"), (tmp_path / "onnx", "onnx")):
        with TestClient(build_app(ServeConfig(model=str(model), backend=backend))) as c:
            assert set(c.get("/v1/model").json()["columns"]) >= set(cols)
            got = c.post("/v1/classify", json={"rows": rows}).json()["results"]
            assert [g["label"] for g in got] == [w["label"] for w in want]
            assert all(abs(g["score"] - w["score"]) < 1e-5 and "warnings" not in g for g, w in zip(got, want))
            odd = {**rows[0], "bill_length_mm": "abc", "island": "Atlantis"}
            del odd["sex"]
            r = c.post("/v1/classify", json={"rows": [odd]}).json()["results"][0]
            assert {(w["column"], w["problem"]) for w in r["warnings"]} == {
                ("bill_length_mm", "not_parsed"), ("island", "unseen_category"), ("sex", "missing")}
            bad = c.post("/v1/classify", json={"rows": [{**rows[0], "colour": "red"}]})
            assert bad.status_code == 422 and bad.json()["error"]["field"] == "rows.0.colour"
            nested = c.post("/v1/classify", json={"rows": [{"island": ["a"]}]})
            assert nested.status_code == 422 and nested.json()["error"]["field"].startswith("rows.0.island")
            upload = c.post("/v1/classify", files=[("images", ("a.png", b"x", "image/png"))])
            assert upload.status_code == 415
