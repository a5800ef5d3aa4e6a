"""Nothing unsafe is loaded: no pickle on any load path (an audit of the package's source), a
pickle that would run code is refused where a checkpoint or weight file is expected, and paths
read from files cannot leave the folder they describe."""

import ast
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import lmforge
from lmforge.errors import LmforgeError

PACKAGE = Path(lmforge.__file__).parent


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name):  # a bare call: eval(...)
                yield node, None, f.id
            elif isinstance(f, ast.Attribute):  # module.function(...); owner "" when not a plain name
                yield node, f.value.id if isinstance(f.value, ast.Name) else "", f.attr


def _kw(node, name):
    return next((k.value for k in node.keywords if k.arg == name), None)


def audit(root: Path) -> list[str]:
    """Every unsafe load in the Python files under ``root``, as 'file:line: what'."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        where = lambda n: f"{path.relative_to(root.parent)}:{n.lineno}"  # noqa: E731
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(n and n.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "marshal", "shelve") for n in names):
                    problems.append(f"{where(node)}: imports a pickle module")
        for node, owner, name in _calls(tree):
            if owner == "torch" and name == "load":
                w = _kw(node, "weights_only")
                if not (isinstance(w, ast.Constant) and w.value is True):
                    problems.append(f"{where(node)}: torch.load without weights_only=True")
            if owner in ("np", "numpy") and name == "load":
                a = _kw(node, "allow_pickle")
                if a is not None and not (isinstance(a, ast.Constant) and a.value is False):
                    problems.append(f"{where(node)}: numpy.load with allow_pickle")
            if owner is None and name in ("eval", "exec"):
                problems.append(f"{where(node)}: {name}()")
            if owner == "yaml" and name in ("load", "unsafe_load", "full_load"):
                problems.append(f"{where(node)}: yaml.{name} (use yaml.safe_load)")
    return problems


def test_the_package_never_unpickles():
    assert audit(PACKAGE) == []


def test_the_audit_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "pkg"
    bad.mkdir()
    (bad / "m.py").write_text("import pickle\nimport torch, numpy as np, yaml\n"
                              "torch.load('x')\ntorch.load('x', weights_only=False)\nnp.load('x', allow_pickle=True)\n"
                              "eval('1')\nyaml.load('a')\ntorch.load('x', weights_only=True)\nnp.load('x')\n")
    found = audit(bad)
    assert [p.split(": ", 1)[1] for p in found] == [
        "imports a pickle module", "torch.load without weights_only=True", "torch.load without weights_only=True",
        "numpy.load with allow_pickle", "eval()", "yaml.load (use yaml.safe_load)"]


class _Payload:
    """Unpickling this creates ``marker``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_in_place_of_optimizer_state_is_refused(tiny_decoder, tmp_path):
    import shutil

    from lmforge.models.weights import sha256
    from lmforge.training.checkpoint import load
    from lmforge.models.load import load_checkpoint_model

    ck = sorted((tiny_decoder / "checkpoints").iterdir())[-1]
    copy = tmp_path / "run" / "checkpoints" / ck.name
    shutil.copytree(ck, copy)
    shutil.copytree(tiny_decoder / "tokenizer", tmp_path / "run" / "tokenizer")
    marker = tmp_path / "PWNED"
    for name in ("optimizer.pt", "rng.pt"):
        (copy / name).write_bytes(pickle.dumps({"state": _Payload(marker)}))
        state = json.loads((copy / "state.json").read_text())
        state["files"][name] = sha256(copy / name)  # checksums match: only weights_only stands in the way
        (copy / "state.json").write_text(json.dumps(state))
    model, _ = load_checkpoint_model(copy)
    opt = torch.optim.AdamW(model.parameters())
    with pytest.raises(LmforgeError, match="optimizer.pt: refused to load"):
        load(copy, model, opt)
    with pytest.raises(LmforgeError, match="rng.pt: refused to load"):
        load(copy, model, None)
    assert not marker.exists()


def test_a_pickled_pytorch_model_bin_is_refused(tmp_path):
    from lmforge.models.weights import read_state_dict

    marker = tmp_path / "PWNED"
    (tmp_path / "pytorch_model.bin").write_bytes(pickle.dumps({"w": _Payload(marker)}))
    with pytest.raises(LmforgeError, match="pytorch_model.bin: cannot read"):
        read_state_dict(tmp_path)
    assert not marker.exists()


def test_paths_read_from_files_stay_inside_their_folder(tiny_decoder, prepared, tmp_path):
    import shutil

    from lmforge.data.shards import PackedDataset
    from lmforge.layout import checkpoint_tokenizer, tokenizer_of_tokens

    # a shard entry with .. in a copied token index
    tokens = tmp_path / "data" / "tokens"
    shutil.copytree(prepared / "data" / "data" / "tokens", tokens)
    assert len(PackedDataset(tokens, "train")) > 0
    index = json.loads((tokens / "index.json").read_text())
    index["splits"]["train"]["shards"][0]["file"] = "../../../../etc/passwd"
    (tokens / "index.json").write_text(json.dumps(index))
    with pytest.raises(LmforgeError, match="outside"):
        PackedDataset(tokens, "train")
    # a symlinked shard pointing elsewhere
    index["splits"]["train"]["shards"][0]["file"] = "train/link.bin"
    (tokens / "index.json").write_text(json.dumps(index))
    (tmp_path / "elsewhere.bin").write_bytes(np.zeros(64, np.uint16).tobytes())
    (tokens / "train" / "link.bin").symlink_to(tmp_path / "elsewhere.bin")
    with pytest.raises(LmforgeError, match="outside"):
        PackedDataset(tokens, "train")
    # the tokenizer a token index or a checkpoint names
    index["tokenizer_dir"] = "../../../.."
    (tokens / "index.json").write_text(json.dumps(index))
    with pytest.raises(LmforgeError, match="outside"):
        tokenizer_of_tokens(tokens)
    ck = sorted((tiny_decoder / "checkpoints").iterdir())[-1]
    assert checkpoint_tokenizer(ck, {}).is_dir()
    with pytest.raises(LmforgeError, match="tokenizer_dir"):
        checkpoint_tokenizer(ck, {"tokenizer_dir": "../../../../x"})
