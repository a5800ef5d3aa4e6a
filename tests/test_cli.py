"""The CLI's error policy: user errors print one line and exit 2 (config/usage) or 1; bugs raise."""

import pytest

from lmforge import cli
from lmforge.errors import DataError, UsageError


def _with_command(monkeypatch, exc):
    parser = cli.build_parser()

    def boom(args):
        raise exc

    real = parser.parse_args
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setattr(parser, "parse_args", lambda argv: real(argv).__class__(func=boom))


def test_user_errors_print_one_line_with_their_exit_code(monkeypatch, capsys):
    _with_command(monkeypatch, DataError("data.csv:3: label 'x' is not declared"))
    assert cli.main(["config", "show", "quickstart"]) == 1
    assert capsys.readouterr().err == "lmforge: error: data.csv:3: label 'x' is not declared\n"
    _with_command(monkeypatch, UsageError("give --file or --data-dir"))
    assert cli.main(["config", "show", "quickstart"]) == 2


def test_a_bug_keeps_its_traceback(monkeypatch):
    _with_command(monkeypatch, KeyError("internal"))
    with pytest.raises(KeyError):
        cli.main(["config", "show", "quickstart"])
    _with_command(monkeypatch, ValueError("a plain ValueError is a bug, not a user error"))
    with pytest.raises(ValueError):
        cli.main(["config", "show", "quickstart"])


def test_version_configs_and_config_diff(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("lmforge ")
    assert cli.main(["configs"]) == 0
    out = capsys.readouterr().out
    assert "quickstart " in out and "Quickstart, the whole path in one config" in out
    assert cli.main(["config", "diff", "quickstart", "quickstart", "--set", "seed=5"]) == 0
    assert "no difference" in capsys.readouterr().out
    assert cli.main(["config", "diff", "quickstart", "quickstart_labeled"]) == 0
    out = capsys.readouterr().out
    assert 'tokenizer.type: "bpe" → "wordpiece"' in out and "key(s) differ" in out


def test_help_has_examples_and_exit_codes(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "lmforge run quickstart" in out and "exit codes: 0 done, 1 failure" in out


@pytest.mark.parametrize("argv", [["generate", "{p}", "--prompt", "x"], ["serve", "{p}", "--smoke", "x"],
                                  ["export", "{p}"], ["evaluate", "{p}", "--file", "x.jsonl"]])
def test_a_missing_model_folder_is_named_as_missing(tmp_path, capsys, argv):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "mine").mkdir()
    missing = str(tmp_path / "runs" / "mien")
    assert cli.main([a.format(p=missing) for a in argv]) == 1
    err = capsys.readouterr().err
    assert f"{missing}: does not exist" in err and "mine" in err


@pytest.mark.parametrize("argv", [["run"], ["data", "prepare"], ["pretrain"], ["finetune"], ["distill"], ["tune"],
                                  ["report"], ["evaluate"], ["predict"], ["generate"], ["export"], ["serve"]])
def test_every_command_help_has_examples(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv + ["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "examples:\n  lmforge " in out and "exit codes:" in out
