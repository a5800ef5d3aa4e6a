"""Serving an image model: ``lmforge serve`` (torch, ONNX fp32, ONNX int8) vs a plain FastAPI
endpoint that decodes the image and calls the PyTorch model once per request, same model, same
requests, same machine (issue 29 §1).

    python benchmarks/bench_serve_images.py --model runs/bench_mae/ft/cnn_random/seed1234 \\
        [--requests 1000] [--concurrency 1,16] [--sides lmforge,lmforge-onnx-fp32,lmforge-onnx-int8,peer]

The model is a fine-tuned Fashion-MNIST image model (any ``lmforge finetune`` folder of an image
model). Requests: the prepared test images (``--data``), one PNG per request, base64 in JSON —
the body both sides take. The peer loads the same saved model (lmforge's loader gives the same
``nn.Module``; what differs is the serving around it): PIL decode, normalize with the saved
statistics, ``model(x)``, softmax, per request, in FastAPI's thread pool. Before serving, the
export's accuracy on the 10,000 test images is measured per side (``lmforge export --file``).
Prints one JSON line per (side, concurrency): requests/s, p50/p95/p99 in ms, errors; then the
ratios to the peer at each concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_serve import free_port, load  # noqa: E402

PEER_APP = r'''
import base64, io, sys
import numpy as np, torch
from fastapi import FastAPI
from PIL import Image
from pydantic import BaseModel
from lmforge.models.arrays import load_array_model
torch.set_num_threads(int(sys.argv[3]))
model, meta = load_array_model(sys.argv[1])
mean = torch.tensor(meta["normalize"]["mean"]).view(1, -1, 1, 1)
std = torch.tensor(meta["normalize"]["std"]).view(1, -1, 1, 1)
labels = meta["labels"]
app = FastAPI()
class Req(BaseModel):
    images: list[str]
@app.get("/ready")
def ready():
    return {"status": "ready"}
@app.post("/v1/classify")
def classify(req: Req):
    out = []
    for b64 in req.images:
        img = Image.open(io.BytesIO(base64.b64decode(b64))).convert("L").resize((meta["in_shape"][2], meta["in_shape"][1]))
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None, None]
        with torch.no_grad():
            p = torch.softmax(model((x - mean) / std), -1)[0]
        k = int(p.argmax())
        out.append({"label": labels[k], "score": float(p[k]), "probs": dict(zip(labels, p.tolist()))})
    return {"results": out}
if __name__ == "__main__":
    import uvicorn
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
'''


def pngs(data: Path, n: int) -> list[str]:
    from PIL import Image

    images = np.load(data / "images" / "test.images.npy", mmap_mode="r")[:n]
    out = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(img[0])).save(buf, "PNG")
        out.append(base64.b64encode(buf.getvalue()).decode())
    return out


def export(model: Path, data: Path, work: Path) -> dict:
    """The int8 + fp32 export, verified and scored on the prepared test images (kept as an .npz)."""
    out = model / "export" / "onnx"
    npz = work / "test.npz"
    if not npz.is_file():
        np.savez(npz, images=np.load(data / "images" / "test.images.npy")[:, 0],
                 labels=np.load(data / "images" / "test.labels.npy"))
    subprocess.run([sys.executable, "-m", "lmforge", "export", str(model), "--quantize", "int8", "--file", str(npz),
                    "--max-examples", "10000", "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "export.json").read_text())


def start(side: str, model: Path, port: int, work: Path, threads: int) -> subprocess.Popen:
    if side == "peer":
        script = work / "peer_image_app.py"
        script.write_text(PEER_APP)
        cmd = [sys.executable, str(script), str(model / "best"), str(port), str(threads)]
    elif side == "lmforge":
        cmd = [sys.executable, "-m", "lmforge", "serve", str(model), "--port", str(port), "--threads", str(threads)]
    else:
        graph = "model.int8.onnx" if side.endswith("int8") else "model.onnx"
        cmd = [sys.executable, "-m", "lmforge", "serve", str(model / "export" / "onnx"), "--backend", "onnx",
               "--onnx-file", graph, "--port", str(port), "--threads", str(threads)]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="an image model's finetune folder (with best/)")
    ap.add_argument("--data", type=Path, default=Path("runs/bench_mae/data"), help="its prepared data folder")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", default="1,16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sides", default="lmforge,lmforge-onnx-fp32,lmforge-onnx-int8,peer")
    a = ap.parse_args()
    work = HERE / "work" / "serve_images"
    work.mkdir(parents=True, exist_ok=True)
    rec = export(a.model, a.data, work)
    q = rec["quality"]
    print(json.dumps({"export": {k: q[k] for k in ("torch_fp32", "onnx_fp32", "onnx_int8")},
                      "examples": q["examples"], "max_abs_diff": rec["verification"]["max_abs_diff"]}), flush=True)
    bodies = [{"images": [b]} for b in pngs(a.data, 1000)]
    print(json.dumps({"load_before": os.getloadavg(), "images": len(bodies)}), flush=True)
    rps: dict[tuple[str, int], float] = {}
    for side in a.sides.split(","):
        port = free_port()
        proc = start(side, a.model, port, work, a.threads)
        try:
            from lmforge.serving.server import wait_ready

            wait_ready(f"http://127.0.0.1:{port}", 180, lambda: proc.poll() is None)
            for c in (int(x) for x in a.concurrency.split(",")):
                r = asyncio.run(load(port, bodies, a.requests, c))
                rps[side, c] = r["rps"]
                print(json.dumps({"side": side, "concurrency": c, **r}), flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    for (side, c), v in rps.items():
        if side != "peer" and ("peer", c) in rps:
            print(json.dumps({"ratio_vs_peer": side, "concurrency": c, "rps_ratio": round(v / rps["peer", c], 2)}))


if __name__ == "__main__":
    main()
