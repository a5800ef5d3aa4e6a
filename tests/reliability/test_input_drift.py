"""An input file that changes during a run, or between a run and its rerun: the change is
caught, nothing read from the moving file is counted as done, and the rerun reads the file as it
now is (not stale outputs of its earlier content)."""

import hashlib
import json
import os

from prepare_helpers import config, write_inputs

from lmforge.cli import main


def test_a_file_that_changes_while_read_is_never_counted(tmp_path, monkeypatch, capsys):
    import lmforge.data.ingest as ingest

    files = write_inputs(tmp_path)
    cfg = config(tmp_path, "drift", files)
    real = ingest.UnitReader.documents

    def documents(self):
        for i, doc in enumerate(real(self)):
            if i == 1 and self.unit.path == files[1]:  # someone appends to the second input mid-read
                with open(files[1], "a") as fh:
                    fh.write(json.dumps({"id": "late", "text": "a late record with several words in it"}) + "\n")
            yield doc

    monkeypatch.setattr(ingest.UnitReader, "documents", documents)
    assert main(["data", "prepare", str(cfg), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "changed while it was being read" in err and files[1] in err
    work = tmp_path / "drift" / "data" / "work" / "ingest"
    assert (work / "unit_00000.done").exists() and not (work / "unit_00001.done").exists()
    monkeypatch.setattr(ingest.UnitReader, "documents", real)
    assert main(["data", "prepare", str(cfg), "--no-progress"]) == 0  # the file is stable now
    out = tmp_path / "drift" / "data"
    ids = {json.loads(x)["id"] for f in (out / "splits").rglob("*.jsonl") for x in f.read_text().splitlines()}
    assert "late" in ids
    m = json.loads((out / "manifest.json").read_text())
    entry = next(e for e in m["inputs"] if e["path"] == files[1])
    assert entry["sha256"] == hashlib.sha256(open(files[1], "rb").read()).hexdigest()


def test_same_size_new_content_is_read_again(tmp_path):
    files = write_inputs(tmp_path)
    cfg = config(tmp_path, "edit", files)
    assert main(["data", "prepare", str(cfg), "--no-progress"]) == 0
    text = open(files[0]).read()
    edited = text.replace("tok1 ", "ZZZZ ", 1)  # same length: only the content and the mtime differ
    assert len(edited) == len(text) and edited != text
    open(files[0], "w").write(edited)
    st = os.stat(files[0])
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert main(["data", "prepare", str(cfg), "--no-progress"]) == 0
    out = tmp_path / "edit" / "data" / "splits"
    assert any("ZZZZ" in f.read_text() for f in out.rglob("*.jsonl"))
