"""Audio as a new data kind, end to end through the CLI: WAVs the test synthesizes (three classes:
low tone, high tone, rising chirp — at random levels, phases, lengths, with noise), plus a corrupt
file, an empty one, a 3-channel one and one at another sample rate → prepare (rejections counted
with reasons) → fine-tune (the one loop, augmentation on) → evaluate → predict on a flat folder →
the run report."""

import json
import wave
from pathlib import Path

import numpy as np
import pytest
import yaml

from lmforge.cli import main

RATE = 8000


def write_wav(path: Path, x: np.ndarray, rate: int = RATE, channels: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
    if channels > 1:
        pcm = np.repeat(pcm[:, None], channels, axis=1).reshape(-1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def clip(kind: str, rng, rate: int = RATE) -> np.ndarray:
    n = int(rate * rng.uniform(0.3, 0.6))
    if kind == "low":
        f = rng.uniform(250, 400) * np.ones(n)
    elif kind == "high":
        f = rng.uniform(1500, 2200) * np.ones(n)
    else:  # chirp: 300 Hz rising to 2,500 Hz
        f = np.linspace(300, 2500, n)
    phase = 2 * np.pi * np.cumsum(f) / rate + rng.uniform(0, 2 * np.pi)
    return rng.uniform(0.2, 0.8) * np.sin(phase) + rng.normal(0, 0.02, n)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    for kind in ("low", "high", "chirp"):
        for i in range(40):
            write_wav(root / "clips" / kind / f"{kind}{i:02d}.wav", clip(kind, rng))
    (root / "clips" / "low" / "corrupt.wav").write_bytes(b"RIFF\x00\x00not a wave file at all")
    write_wav(root / "clips" / "high" / "empty.wav", np.zeros(0))
    write_wav(root / "clips" / "chirp" / "surround.wav", clip("chirp", rng), channels=3)
    write_wav(root / "clips" / "low" / "rate16k.wav", clip("low", rng, 16000), rate=16000)
    for i, kind in enumerate(("low", "high", "chirp", "high")):  # a flat folder, as a user has it
        write_wav(root / "new" / f"n{i}_{kind}.wav", clip(kind, rng))
    return root


def cfg_file(root: Path, name: str, **audio) -> str:
    cfg = {"name": name, "run_dir": str(root / name), "seed": 1,
           "data": {"kind": "audio", "audio": {"sources": [{"path": str(root / "clips")}], "sample_rate": RATE,
                                               "seconds": 0.5, "resample": False,
                                               "features": {"n_fft": 256, "hop": 128, "n_mels": 24},
                                               "augment": {"enabled": True}, **audio},
                    "split": {"val": 0.2, "test": 0.2}},
           "model": {"arch": "cnn", "conv_channels": [8, 16], "hidden": [32]},
           "finetune": {"task": "audio", "optim": {"lr": 3e-3}, "loop": {"epochs": 12, "batch_size": 16, "threads": 1}}}
    p = root / f"{name}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return str(p)


def test_audio_prepare_finetune_evaluate_predict_report(clips, tmp_path, capsys):
    cfg = cfg_file(clips, "snd")
    run = clips / "snd"
    assert main(["data", "prepare", cfg, "--no-progress"]) == 0
    man = json.loads((run / "data" / "manifest.json").read_text())
    assert man["kind"] == "audio" and man["labels"] == ["chirp", "high", "low"]
    assert man["counts"]["read"] == 124 and man["counts"]["kept"] == 120
    assert man["counts"]["rejected_by_reason"] == {"channels": 1, "empty": 1, "sample_rate": 1, "undecodable": 1}
    rejected = [json.loads(line) for line in (run / "data" / "rejected" / "files.jsonl").read_text().splitlines()]
    assert {Path(r["file"]).name: r["reason"] for r in rejected} == {
        "corrupt.wav": "undecodable", "empty.wav": "empty", "surround.wav": "channels", "rate16k.wav": "sample_rate"}
    assert man["shape"] == [1, 24, 32]  # 0.5 s at 8 kHz, hop 128 → 32 frames

    assert main(["finetune", cfg, "--no-progress"]) == 0
    summary = json.loads((run / "finetune" / "summary.json").read_text())
    assert summary["results"]["test"]["accuracy"] >= 0.9, summary["results"]  # 3 classes: chance is 1/3
    assert main(["evaluate", str(run / "finetune"), "--data-dir", str(run / "data"), "--split", "test",
                 "--out", str(tmp_path / "ev")]) == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["accuracy"] == pytest.approx(summary["results"]["test"]["accuracy"])

    out = tmp_path / "pred.jsonl"
    assert main(["predict", str(run / "finetune"), "--file", str(clips / "new"), "--out", str(out)]) == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    got = {Path(r["id"]).name.split("_")[1].split(".")[0]: r["label"] for r in recs}
    assert len(recs) == 4 and got == {"low": "low", "high": "high", "chirp": "chirp"}

    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    page = (run / "report" / "index.md").read_text() if (run / "report" / "index.md").exists() else \
        next((run / "report").glob("*.md")).read_text()
    assert "Data (audio)" in page and "undecodable" in page


def test_a_resampled_clip_is_kept_and_text_keys_on_an_audio_run_are_refused(clips, capsys):
    cfg = cfg_file(clips, "snd_rs", resample=True)
    assert main(["data", "prepare", cfg, "--no-progress"]) == 0
    man = json.loads((clips / "snd_rs" / "data" / "manifest.json").read_text())
    assert man["counts"]["kept"] == 121 and "sample_rate" not in man["counts"]["rejected_by_reason"]
    raw = yaml.safe_load(Path(cfg).read_text())
    raw["data"]["clean"] = {"lowercase": True}
    Path(cfg).write_text(yaml.safe_dump(raw))
    assert main(["data", "prepare", cfg, "--no-progress"]) != 0
    assert "data.clean: is read only for data.kind: text; this run is data.kind: audio" in capsys.readouterr().err


def test_audio_model_exported_and_served_like_predict(clips, tmp_path):
    """WAV files in (base64 JSON or multipart), the same labels as ``lmforge predict``; the ONNX graph
    takes the spectrogram with the normalization inside and equals PyTorch to 1e-4."""
    import base64

    pytest.importorskip("onnxruntime")
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from lmforge.serving.app import build_app
    from lmforge.serving.config import ServeConfig

    run = clips / "snd"
    if not (run / "finetune" / "best").is_dir():  # when run alone
        cfg = cfg_file(clips, "snd")
        assert main(["data", "prepare", cfg, "--no-progress"]) == 0 and main(["finetune", cfg, "--no-progress"]) == 0
    out = tmp_path / "pred.jsonl"
    assert main(["predict", str(run / "finetune"), "--file", str(clips / "new"), "--out", str(out)]) == 0
    want = {Path(json.loads(line)["id"]).name: json.loads(line)["label"] for line in out.read_text().splitlines()}
    onnx = tmp_path / "onnx"
    assert main(["export", str(run / "finetune"), "--file", str(clips / "clips"), "--out", str(onnx)]) == 0
    rec = json.loads((onnx / "export.json").read_text())
    assert rec["inputs"] == {"spectrogram": "float32 [batch, 1, 24, 32]"} and rec["verification"]["max_abs_diff"] <= 1e-4
    assert rec["quality"]["onnx_fp32"]["accuracy"] == rec["quality"]["torch_fp32"]["accuracy"]
    names = sorted(want)
    files = [(clips / "new" / n).read_bytes() for n in names]
    for model, backend in ((run / "finetune", "torch"), (onnx, "onnx")):
        with TestClient(build_app(ServeConfig(model=str(model), backend=backend))) as c:
            assert c.get("/v1/model").json()["input"]["sample_rate"] == RATE
            got = c.post("/v1/classify", json={"audio": [base64.b64encode(f).decode() for f in files]}).json()
            assert [r["label"] for r in got["results"]] == [want[n] for n in names]
            up = c.post("/v1/classify", files=[("audio", (n, f, "audio/wav")) for n, f in zip(names, files)]).json()
            assert [r["label"] for r in up["results"]] == [want[n] for n in names]
            bad = c.post("/v1/classify", json={"audio": [base64.b64encode(b"RIFF nope").decode()]})
            assert bad.status_code == 422 and bad.json()["error"]["field"] == "audio.0"
            assert "undecodable" in bad.json()["error"]["message"]


def test_lmforge_run_on_audio_ends_with_export_and_a_served_request(clips):
    cfg = cfg_file(clips, "snd_run")
    assert main(["run", cfg, "--no-progress"]) == 0
    served = json.loads((clips / "snd_run" / "pipeline" / "serve.done.json").read_text())["result"]
    assert json.loads(served["response"])["results"][0]["label"] in ("chirp", "high", "low")  # a synthesized tone sent
    assert (clips / "snd_run" / "export" / "onnx" / "model.onnx").is_file()
