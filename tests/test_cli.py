"""The `mailbot` command as users run it: real processes, exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import test.test_email

from mailbot.ops.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "mail"
CPYTHON_CORPUS = Path(test.test_email.__file__).parent / "data"


def mailbot(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailbot", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def assert_clean_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("mailbot: error: ")
    for fragment in fragments:
        assert fragment in result.stderr


def test_every_cpython_test_mail_gives_one_json_line_and_no_traceback():
    files = sorted(str(p) for p in CPYTHON_CORPUS.glob("msg_*.txt"))
    assert len(files) > 40
    result = mailbot("parse", "--json", *files)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert [json.loads(line)["file"] for line in lines] == files
    for line in lines:
        out = json.loads(line)
        assert set(out) >= {"file", "kind", "ignored", "sender", "requests", "problems"}


def test_parse_json_reads_the_corpus_in_input_order():
    files = sorted(str(p) for p in CORPUS.glob("*.eml"))
    result = mailbot("parse", "--json", *files)
    assert result.returncode == 0, result.stderr
    parsed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [p["file"] for p in parsed] == files
    seed = next(p for p in parsed if p["file"].endswith("seed_example_plain_utf8.eml"))
    assert seed["kind"] == "free_update" and seed["ignored"] is None
    assert seed["requests"] == [{
        "company": "Empresa de muestra S.A. de C.V.", "contact_name": "Raul Gonzalez Rivera",
        "contact_email": "rgonzalez@empresamuestra.com.mx",
        "system": "CONTPAQ i Factura electrónica", "serial": "AAAA-BBBB-CCCC-DDDD",
        "source": "body"}]
    auto = next(p for p in parsed if p["file"].endswith("auto_reply_outlook_out_of_office.eml"))
    assert auto["ignored"] == "auto_reply"


def test_parse_without_json_prints_a_readable_table():
    result = mailbot("parse", str(CORPUS / "seed_example_plain_utf8.eml"))
    assert result.returncode == 0
    assert "kind: free_update" in result.stdout
    assert "AAAA-BBBB-CCCC-DDDD" in result.stdout


def test_a_file_that_cannot_be_read_is_named_and_the_others_still_parse(tmp_path):
    result = mailbot("parse", "--json", str(tmp_path / "absent.eml"),
                     str(CORPUS / "seed_example_plain_utf8.eml"))
    assert_clean_error(result, "absent.eml: cannot read")
    assert len(result.stdout.splitlines()) == 1


def test_parse_of_a_missing_file_is_one_error_line_and_exit_code_2(tmp_path):
    result = mailbot("parse", "missing.eml", cwd=tmp_path)
    assert_clean_error(result)
    assert result.stderr == ("mailbot: error: missing.eml: cannot read: "
                             "No such file or directory\n")
    assert result.stdout == ""
    folder = mailbot("parse", "--json", str(tmp_path))
    assert_clean_error(folder, f"{tmp_path}: cannot read: Is a directory")
    assert len(folder.stderr.splitlines()) == 1 and folder.stdout == ""


def test_a_bad_config_is_one_line_and_exit_code_2(tmp_path):
    (tmp_path / "bad.toml").write_text("[source]\ntype = 'pop3'\n")
    assert_clean_error(mailbot("--config", str(tmp_path / "bad.toml"), "rules", "check"),
                       "bad.toml", "[source] type must be")
    assert_clean_error(mailbot("--config", str(tmp_path / "missing.toml"), "log"),
                       "no such configuration file")


def test_a_bad_registry_file_names_every_bad_row_and_imports_nothing(tmp_path):
    (tmp_path / "config.toml").write_text(
        f'[mailbot]\nrules_dir = "{ROOT / "rules"}"\ntemplates_dir = "{ROOT / "templates"}"\n')
    csv = tmp_path / "registry.csv"
    csv.write_text("serial,system,company,contact_email,purchase_date,modality,support_until,users\n"
                   "AAAA-BBBB-CCCC-DDDD,CONTPAQ i Bancos,Empresa,a@b.mx,2012-01-01,fisico,,1\n"
                   "AAAA-BBBB-CCCC,CONTPAQ i Bancos,Empresa,a@b.mx,2012-13-01,fisico,,1\n")
    result = mailbot("registry", "import", str(csv), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "line 3" in result.stderr and "serial" in result.stderr
    assert "purchase_date" in result.stderr
    log = mailbot("log", "--json", cwd=tmp_path)
    assert log.returncode == 0
    good = mailbot("registry", "import", str(ROOT / "tests/data/registry/registry_good.csv"),
                   cwd=tmp_path)
    assert good.returncode == 0, good.stderr
    assert "added" in good.stdout


def test_rules_and_templates_checks_pass_on_the_shipped_files():
    assert mailbot("rules", "check").returncode == 0
    result = mailbot("templates", "check")
    assert result.returncode == 0, result.stdout
    preview = mailbot("templates", "preview", "keys_issued")
    assert preview.returncode == 0
    assert "Subject:" in preview.stdout


def test_a_broken_template_is_named_by_templates_check(tmp_path):
    import shutil

    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    (tmp_path / "templates" / "not_eligible.txt.j2").write_text("{{ no_such_variable }}\n")
    (tmp_path / "config.toml").write_text(
        f'[mailbot]\nrules_dir = "{ROOT / "rules"}"\ntemplates_dir = "templates"\n')
    result = mailbot("templates", "check", cwd=tmp_path)
    assert result.returncode == 1
    assert "not_eligible.txt.j2" in result.stdout


def test_run_once_twice_on_the_defaults_sends_nothing_twice(tmp_path):
    (tmp_path / "config.toml").write_text(
        f'[mailbot]\nrules_dir = "{ROOT / "rules"}"\ntemplates_dir = "{ROOT / "templates"}"\n')
    inbox = tmp_path / "var" / "inbox" / "new"
    inbox.mkdir(parents=True)
    (inbox / "1.eml").write_bytes((CORPUS / "seed_example_plain_utf8.eml").read_bytes())
    first = mailbot("run", "--once", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "1 mail(s) seen" in first.stdout
    replies = sorted((tmp_path / "var" / "outbox").glob("*.eml"))
    assert len(replies) == 1
    second = mailbot("run", "--once", cwd=tmp_path)
    assert "0 mail(s) seen" in second.stdout
    assert sorted((tmp_path / "var" / "outbox").glob("*.eml")) == replies
    log = mailbot("log", "--json", cwd=tmp_path)
    entries = [json.loads(line) for line in log.stdout.splitlines()]
    assert len(entries) == 1 and entries[0]["outcome"] == "review"  # unknown serial: no registry
    assert entries[0]["requests"][0]["hits"][0]["rule"] == "registry.known"
    filtered = mailbot("log", "--serial", "aaaa-bbbb-cccc-dddd", cwd=tmp_path)
    assert "registry.known" in filtered.stdout
    none = mailbot("log", "--sender", "nobody@example.com", cwd=tmp_path)
    assert "no mail processed yet" in none.stdout


def every_command(parser, prefix=()):
    actions = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    if not actions:
        yield prefix
        return
    for name, sub in actions[0].choices.items():
        yield from every_command(sub, (*prefix, name))


@pytest.mark.parametrize("command", list(every_command(build_parser())),
                         ids=lambda c: " ".join(c))
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: mailbot" in out and len(out.splitlines()) >= 3


def test_parse_works_from_any_directory_with_the_shipped_rules(tmp_path):
    result = mailbot("parse", "--json", str(CORPUS / "seed_example_plain_utf8.eml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["requests"][0]["serial"] == "AAAA-BBBB-CCCC-DDDD"


# --- global options go before or after the sub-command ---------------------------------------

@pytest.mark.parametrize("argv", [
    ["--config", "c.toml", "-v", "--log-format", "json", "run", "--once"],
    ["run", "--once", "--config", "c.toml", "-v", "--log-format", "json"],
    ["--config", "c.toml", "run", "--once", "-v", "--log-format", "json"],
    ["review", "list", "--config", "c.toml", "--verbose", "--log-format", "json"],
    ["review", "--config", "c.toml", "list", "-v", "--log-format=json"],
    ["rules", "check", "--config", "c.toml", "-v", "--log-format", "json"],
    ["keys", "import", "k.csv", "--config=c.toml", "-v", "--log-format", "json"],
])
def test_global_options_are_read_before_or_after_the_subcommand(argv):
    args = build_parser().parse_args(argv)
    assert (args.config, args.verbose, args.log_format) == ("c.toml", True, "json")


@pytest.mark.parametrize("argv", [["run"], ["review", "list"], ["templates", "check"]])
def test_a_subcommand_without_global_options_keeps_their_defaults(argv):
    args = build_parser().parse_args(argv)
    assert (args.config, args.verbose, args.log_format) == (None, False, "text")


def test_a_subcommand_does_not_clobber_a_global_option_given_before_it():
    args = build_parser().parse_args(["--config", "c.toml", "--log-format", "json", "-v",
                                      "review", "show", "3"])
    assert (args.config, args.verbose, args.log_format, args.id) == ("c.toml", True, "json", 3)


def test_config_after_a_nested_subcommand_is_the_one_loaded(tmp_path):
    (tmp_path / "bad.toml").write_text("[source]\ntype = 'pop3'\n")
    assert_clean_error(mailbot("rules", "check", "--config", str(tmp_path / "bad.toml")),
                       "bad.toml", "[source] type must be")
    assert_clean_error(mailbot("review", "list", "--config", str(tmp_path / "missing.toml")),
                       "missing.toml", "no such configuration file")


# --- what -v changes -------------------------------------------------------------------------

def _verbose_help() -> str:
    [action] = [a for a in build_parser()._actions if "--verbose" in a.option_strings]
    return " ".join(action.help.split())


@pytest.mark.parametrize("argv, level", [
    (["rules", "check"], "WARNING"),
    (["-v", "rules", "check"], "INFO"),
    (["rules", "check", "-v"], "INFO"),
    (["run", "--once"], "INFO"),
])
def test_v_help_says_what_is_logged_with_and_without_it(argv, level, monkeypatch, capsys):
    import logging

    from mailbot.ops import cli, logsetup

    seen = {}
    real_setup = logsetup.setup

    def setup(**kw):
        real_setup(**kw)
        seen["level"] = logging.getLevelName(logging.getLogger().level)

    monkeypatch.setattr(logsetup, "setup", setup)
    monkeypatch.setattr(cli, "cmd_rules_check", lambda args: 0)
    monkeypatch.setattr(cli, "cmd_run", lambda args: 0)
    assert cli.main(argv) == 0
    assert seen["level"] == level
    text = _verbose_help()
    # What the help promises matches the levels above: INFO events with -v; without it only
    # warnings and errors, except `run`, which logs them anyway. Never "every event": DEBUG
    # lines (e.g. SMTP connection details) are not shown with -v either.
    assert "every event" not in text
    assert "warnings and errors" in text and "`run`" in text


# --- log --outcome ---------------------------------------------------------------------------

def test_log_with_an_unknown_outcome_is_an_error_listing_the_valid_ones(tmp_path):
    from mailbot.ops.logview import OUTCOMES

    result = mailbot("log", "--outcome", "bogus", cwd=tmp_path)
    assert_clean_error(result, "'bogus'", *OUTCOMES)
    assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "var").exists()  # refused before the store was opened
    assert mailbot("log", "--outcome", "Issued", cwd=tmp_path).returncode == 0


def test_every_outcome_the_code_stores_is_one_log_outcome_accepts():
    import re

    from mailbot.ops.logview import OUTCOMES

    stored = set()
    for path in (ROOT / "mailbot").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        stored |= set(re.findall(r'\bPlan\(\s*"(\w+)"', text))
        stored |= set(re.findall(r'\boutcome="(\w+)"', text))
    assert {"ignored", "incomplete", "duplicate", "rejected"} <= stored  # the scan finds them
    assert stored <= set(OUTCOMES)
