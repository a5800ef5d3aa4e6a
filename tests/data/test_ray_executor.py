"""``lmforge data prepare --executor ray``: the same bytes as the local process pool, a worker
killed mid-unit is retried, a driver killed mid-stage resumes from the markers, clear errors.

Every output file of the run folder is compared (data/ with its work/ intermediates, and the
tokenizer) by sha256. Two files hold measurements and are compared after removing them:
``manifest.json`` without ``timings_s``, ``peak_rss_mb`` and ``peak_rss_workers_mb``, and
``report.md`` with its seconds and peak-RSS figures replaced; the run folder's path is replaced by
``RUN`` in both. One Ray instance (2 CPUs) serves the module; 20-40 s on 2 cores."""

import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_prepare_e2e import make_corpus, write_config

from lmforge.cli import main

ray = pytest.importorskip("ray")

VOLATILE = ("timings_s", "peak_rss_mb", "peak_rss_workers_mb")


def config(root: Path, name: str) -> tuple[Path, Path]:
    """The e2e tests' tiny config over four inputs in ``root`` (four work units per stage), two
    workers; its YAML and run folder in ``root/name`` (with write_config's own corpus.jsonl, unused).
    Every run has the same config name, which the manifest and the report show."""
    for i in range(4):
        if not (root / f"in{i}.jsonl").exists():
            make_corpus(root / f"in{i}.jsonl", n=80, seed=i)
    (root / name).mkdir(exist_ok=True)
    return write_config(root / name, "ray", workers=2,
                        **{"data.sources": [{"path": str(root / "in*.jsonl"), "id_field": "id"}]})


def outputs(run: Path) -> dict[str, str]:
    """sha256 of every file under the run folder; manifest and report without their measurements."""
    out = {}
    for p in sorted(run.rglob("*")):
        if not p.is_file():
            continue
        rel = str(p.relative_to(run))
        if rel == "data/manifest.json":
            m = json.loads(p.read_text())
            text = json.dumps({k: v for k, v in m.items() if k not in VOLATILE}, sort_keys=True)
        elif rel == "data/report.md":
            text = re.sub(r"\d+\.\d+ s, peak RSS .*", "SECONDS, RSS", p.read_text())
            text = re.sub(r"\n(plan [\d.]+, .*total [\d.]+)\n", "\nTIMINGS\n", text)
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            continue
        out[rel] = hashlib.sha256(text.replace(str(run), "RUN").encode()).hexdigest()
    return out


def run_cli(cfg: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lmforge", "data", "prepare", str(cfg), "--no-progress", *extra],
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def cluster():
    """One local Ray instance for the module; RayExecutor in this process uses it as it is."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(root, outputs of the local executor's run)."""
    root = tmp_path_factory.mktemp("ray")
    cfg, run = config(root, "local")
    assert main(["data", "prepare", str(cfg), "--no-progress"]) == 0
    got = outputs(run)
    assert "data/manifest.json" in got and any(k.startswith("data/tokens/train/") for k in got)
    return root, got


def test_same_bytes_as_the_local_executor(cluster, reference, capsys):
    root, want = reference
    cfg, run = config(root, "same")
    assert main(["data", "prepare", str(cfg), "--no-progress", "--executor", "ray"]) == 0
    assert "executor: the Ray connection this process already has" in capsys.readouterr().out
    got = outputs(run)
    assert got.keys() == want.keys(), sorted(set(got) ^ set(want))
    assert {k for k in got if got[k] != want[k]} == set()


def test_a_worker_killed_mid_unit_is_retried(cluster, reference, monkeypatch):
    root, want = reference
    cfg, run = config(root, "killed_worker")
    pid_file = root / "held_worker.pid"
    # the first worker to reach ingest.mid_unit writes its pid and waits; the retry passes the point
    monkeypatch.setenv("LMFORGE_FAULT_HOLD", f"ingest.mid_unit:{pid_file}")
    killed: list[int] = []

    def kill_the_held_worker() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if pid_file.exists() and pid_file.read_text().endswith("\n"):
                pid = int(pid_file.read_text())
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_held_worker, daemon=True)
    killer.start()
    assert main(["data", "prepare", str(cfg), "--no-progress", "--executor", "ray"]) == 0
    killer.join(5)
    assert killed and killed[0] != os.getpid()  # a worker died mid-unit, and the run still finished
    got = outputs(run)
    assert got.keys() == want.keys(), sorted(set(got) ^ set(want))
    assert {k for k in got if got[k] != want[k]} == set()


def test_a_killed_driver_resumes_from_the_markers(cluster, reference):
    root, want = reference
    cfg, run = config(root, "killed_driver")
    # the driver (connected to the module's instance, which survives it) kills itself once it has
    # gathered two ingest results: their markers are on disk, the run is not finished
    first = run_cli(cfg, "--executor", "ray", "--address", cluster, env={"LMFORGE_FAULT": "ingest.gathered:2"})
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    assert len(list((run / "data" / "work" / "ingest").glob("*.done"))) >= 2
    assert not (run / "data" / "manifest.json").exists()
    # the same command again, on a Ray instance of its own this time
    again = run_cli(cfg, "--executor", "ray")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "executor: a local Ray instance, 2 CPU(s)" in again.stdout
    assert re.search(r"ingest: [234] of 4 unit\(s\) already done by an earlier run", again.stdout), again.stdout
    got = outputs(run)
    assert got.keys() == want.keys(), sorted(set(got) ^ set(want))
    assert {k for k in got if got[k] != want[k]} == set()


def test_an_address_nobody_answers_is_a_clear_error(tmp_path):
    cfg, _ = config(tmp_path, "nobody")
    start = time.monotonic()
    r = run_cli(cfg, "--executor", "ray", "--address", "ray://127.0.0.1:1")
    assert time.monotonic() - start < 20
    assert r.returncode == 1, r.stderr[-2000:]
    err = r.stderr.strip().splitlines()[-1]
    assert "cannot connect to the Ray cluster at ray://127.0.0.1:1: nothing answers" in err
    assert "ray start --head" in err and "Traceback" not in r.stderr


def test_missing_ray_names_the_extra(tmp_path, monkeypatch, capsys):
    cfg, _ = config(tmp_path, "noray")
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    assert main(["data", "prepare", str(cfg), "--no-progress", "--executor", "ray"]) == 2
    assert "pip install 'lmforge[ray]'" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--address", "auto"], "--address names a Ray cluster: use it with --executor ray"),
    (["--executor", "ray", "--world-size", "2"], "with --executor ray, Ray spreads the units over the cluster"),
])
def test_flags_that_do_not_go_together(tmp_path, capsys, flags, message):
    cfg, run = config(tmp_path, "flags")
    assert main(["data", "prepare", str(cfg), "--no-progress", *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (run / "data" / "work").exists()  # refused before any work


def test_image_and_tabular_data_refuse_the_ray_executor(tmp_path):
    from lmforge.data.config import DataConfig
    from lmforge.data.prepare import PipelineError, prepare
    from lmforge.layout import RunPaths
    from lmforge.tokenizer.config import TokenizerConfig

    for kind in ("image", "tabular"):
        with pytest.raises(PipelineError, match=f"data.kind: {kind} prepares in one process"):
            prepare(DataConfig(kind=kind), TokenizerConfig(), RunPaths(tmp_path / kind), seed=0, workers=1, name="x",
                    executor="ray")
        assert not (tmp_path / kind).exists()
