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
