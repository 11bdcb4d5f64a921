"""The package as an admin gets it: the wheel and the sdist built from this tree, the wheel
installed into a fresh virtualenv of its own (dependencies from the package index or pip's
cache, never this source tree), and mailbot run from directories that have nothing to do with
the checkout: on the shipped defaults, after `mailbot init`, and as `mailbot demo`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED_MAIL = ROOT / "tests" / "data" / "mail" / "seed_example_plain_utf8.eml"
DEMO_MAILS = 12


def shipped_names(folder: str) -> set[str]:
    return {p.name for p in (ROOT / folder).iterdir() if p.is_file() and not p.name.startswith(".")}


def run(cmd: list, *, cwd: Path, env: dict | None = None, timeout: float = 300,
        check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
                    f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}", pytrace=False)
    return proc


@dataclass(frozen=True)
class Dist:
    wheel: Path
    sdist: Path


@dataclass(frozen=True)
class Installed:
    root: Path  # the virtualenv
    env: dict[str, str]  # the environment to run its commands in

    @property
    def mailbot(self) -> Path:
        return self.root / "bin" / "mailbot"

    def __call__(self, *args, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
        return run([self.mailbot, *args], cwd=cwd, env=self.env, check=check)


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Dist:
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", out, ROOT], cwd=out)
    run([sys.executable, "-m", "build", "--sdist", "--outdir", out, ROOT], cwd=out)
    [wheel] = out.glob("mailbot-*.whl")
    [sdist] = out.glob("mailbot-*.tar.gz")
    return Dist(wheel=wheel, sdist=sdist)


@pytest.fixture(scope="module")
def installed(dist, tmp_path_factory) -> Installed:
    """A fresh virtualenv with only the wheel (and its dependencies) installed. It is made
    without pip; this test run's pip installs into it (`pip --python`), which saves the
    seconds ensurepip takes and installs exactly the same files."""
    base = tmp_path_factory.mktemp("installed")
    root = base / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", root], cwd=base)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    run([sys.executable, "-m", "pip", "--python", root / "bin" / "python", "install",
         "--quiet", dist.wheel], cwd=base, env=env)
    return Installed(root=root, env=env)


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """An empty directory far from the checkout."""
    path = tmp_path / "elsewhere"
    path.mkdir()
    return path


# -- what the archives carry ------------------------------------------------------------------

def test_the_wheel_carries_the_default_rules_templates_and_example_config(dist):
    names = set(zipfile.ZipFile(dist.wheel).namelist())
    defaults = "mailbot/defaults/"
    rules = {n[len(defaults + "rules/"):] for n in names if n.startswith(defaults + "rules/")}
    templates = {n[len(defaults + "templates/"):] for n in names
                 if n.startswith(defaults + "templates/")}
    assert rules == shipped_names("rules") and {"catalogue.toml", "kinds.toml"} <= rules
    assert all(n.endswith(".toml") for n in rules)
    assert templates == shipped_names("templates") and "keys_issued.txt.j2" in templates
    assert defaults + "config.example.toml" in names
    assert "mailbot/ops/init.py" in names and "mailbot/shipped.py" in names
    assert any(n.startswith("mailbot/store/migrations/versions/0001_") for n in names)
    assert not any("__pycache__" in n or n.startswith(("tests/", "rules/")) for n in names)
    entry_points = zipfile.ZipFile(dist.wheel).read(
        next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "mailbot = mailbot.ops.cli:main" in entry_points


def test_the_wheel_carries_the_consoles_templates_static_files_and_catalog(dist):
    names = set(zipfile.ZipFile(dist.wheel).namelist())
    web = ROOT / "mailbot" / "ops" / "web"
    for folder in ("templates", "static", "locale"):
        files = {p.relative_to(ROOT).as_posix() for p in (web / folder).rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts}
        assert files and files <= names, folder
    assert "mailbot/ops/web/locale/es_MX/LC_MESSAGES/messages.po" in names
    assert not any(n.endswith(".mo") for n in names)  # compiled in memory at start


def test_the_sdist_carries_rules_templates_and_the_example_config(dist):
    with tarfile.open(dist.sdist) as tar:
        names = set(tar.getnames())
    [top] = {n.split("/", 1)[0] for n in names}
    inside = {n[len(top) + 1:] for n in names if "/" in n}
    assert {n[len("rules/"):] for n in inside if n.startswith("rules/")} == shipped_names("rules")
    assert ({n[len("templates/"):] for n in inside if n.startswith("templates/")}
            == shipped_names("templates"))
    assert {"config.example.toml", "pyproject.toml", "README.md", "mailbot/shipped.py",
            "mailbot/ops/init.py"} <= inside
    assert not any(n.startswith((".venv/", "demo/", "var/")) for n in inside)


# -- the installed command ------------------------------------------------------------------

def test_the_installed_package_is_the_wheel_not_this_checkout(installed, elsewhere):
    out = run([installed.root / "bin" / "python", "-c",
               "import mailbot, mailbot.shipped as s; print(mailbot.__file__); "
               "print(s.shipped('rules')); print(s.shipped('templates')); "
               "print(s.shipped('config.example.toml'))"],
              cwd=elsewhere, env=installed.env).stdout.splitlines()
    package, rules, templates, example = map(Path, out)
    assert package.is_relative_to(installed.root) and not package.is_relative_to(ROOT)
    assert rules == package.parent / "defaults" / "rules" and rules.is_dir()
    assert templates == package.parent / "defaults" / "templates" and templates.is_dir()
    assert example.is_file()


def test_without_a_config_it_runs_on_the_shipped_defaults_from_any_directory(installed, elsewhere):
    rules = installed("rules", "check", cwd=elsewhere)
    assert "defaults/rules: OK:" in rules.stdout and "request kinds" in rules.stdout
    assert Path(rules.stdout.split(":", 1)[0]).is_relative_to(installed.root)
    templates = installed("templates", "check", cwd=elsewhere)
    assert "templates: OK: " in templates.stdout and "render with sample data" in templates.stdout

    parsed = installed("parse", "--json", SEED_MAIL, cwd=elsewhere)
    [line] = parsed.stdout.splitlines()
    result = json.loads(line)
    assert result["kind"] == "free_update" and result["ignored"] is None
    assert result["sender"] == "rgonzalez@empresamuestra.com.mx"
    [request] = result["requests"]
    assert request["serial"] == "AAAA-BBBB-CCCC-DDDD"
    assert request["system"] == "CONTPAQ i Factura electrónica"
    assert request["source"] == "body" and result["problems"] == []
    assert list(elsewhere.iterdir()) == []  # reading writes nothing


def test_init_writes_an_installation_that_checks_and_runs(installed, elsewhere):
    first = installed("init", cwd=elsewhere)
    assert "wrote config.toml" in first.stdout
    assert f"wrote rules/ ({len(shipped_names('rules'))} file(s)" in first.stdout
    assert "kept" not in first.stdout
    assert "mailbot doctor" in first.stdout and "mailbot run --once" in first.stdout
    config = (elsewhere / "config.toml").read_text(encoding="utf-8")
    assert config.endswith((ROOT / "config.example.toml").read_text(encoding="utf-8"))
    assert {p.name for p in (elsewhere / "rules").iterdir()} == shipped_names("rules")
    assert {p.name for p in (elsewhere / "templates").iterdir()} == shipped_names("templates")
    assert ((elsewhere / "rules" / "catalogue.toml").read_bytes()
            == (ROOT / "rules" / "catalogue.toml").read_bytes())

    rules = installed("rules", "check", cwd=elsewhere)
    assert rules.stdout.startswith(f"{elsewhere / 'rules'}: OK:")
    templates = installed("templates", "check", cwd=elsewhere)
    assert templates.stdout.startswith(f"{elsewhere / 'templates'}: OK:")
    once = installed("run", "--once", cwd=elsewhere)
    assert "0 mail(s) seen" in once.stdout
    assert (elsewhere / "var" / "mailbot.db").is_file()
    assert (elsewhere / "var" / "inbox" / "new").is_dir()

    (elsewhere / "rules" / "kinds.toml").write_text("# edited by the admin\n", encoding="utf-8")
    again = installed("init", cwd=elsewhere)
    assert "kept  config.toml" in again.stdout and "nothing written" in again.stdout
    kinds = (elsewhere / "rules" / "kinds.toml").read_text(encoding="utf-8")
    assert kinds == "# edited by the admin\n"

    (elsewhere / "afile").write_text("x")
    error = installed("init", elsewhere / "afile", cwd=elsewhere, check=False)
    assert error.returncode == 2 and error.stdout == ""
    assert error.stderr.startswith("mailbot: error: ") and len(error.stderr.splitlines()) == 1


def test_the_installed_console_adds_an_account_and_renders_its_spanish_pages(installed,
                                                                             elsewhere):
    password = "una-clave-larga-1"
    added = subprocess.run([installed.mailbot, "users", "add", "ana", "--role", "admin",
                            "--password-stdin"], input=f"{password}\n{password}\n", cwd=elsewhere,
                           env=installed.env, capture_output=True, text=True, timeout=300)
    assert added.returncode == 0, added.stderr
    listed = installed("users", "list", cwd=elsewhere)
    assert listed.stdout.splitlines()[1].split()[:3] == ["ana", "admin", "no"]
    page = run([installed.root / "bin" / "python", "-c",
                "from mailbot import config; from mailbot.ops.web.app import create_app; "
                "app = create_app(config.load()); "
                "print(app.state.renderer.render('login.html', {'user': None, 'title': 'x', "
                "'csrf_token': 't', 'next': '/', 'error': '', 'name': '', "
                "'request_path': '/login'}).body.decode())"],
               cwd=elsewhere, env=installed.env).stdout
    assert "Iniciar sesión" in page and 'lang="es-MX"' in page
    assert (elsewhere / "var" / "web-secret.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("requirement", ["mailbot[postgres]", "WHEEL[postgres]"])
def test_the_readmes_postgres_line_adds_psycopg_to_the_installed_package(installed, dist, elsewhere,
                                                                      requirement):
    """`pip install 'mailbot[postgres]'` (or the wheel with the extra) in the virtualenv that
    holds mailbot: mailbot itself stays as installed, psycopg is what would be added."""
    requirement = requirement.replace("WHEEL", str(dist.wheel))
    report = run([sys.executable, "-m", "pip", "--python", installed.root / "bin" / "python",
                  "install", "--dry-run", "--quiet", "--report", "-", requirement],
                 cwd=elsewhere, env=installed.env)
    would_install = {item["metadata"]["name"].lower()
                     for item in json.loads(report.stdout)["install"]}
    assert "psycopg" in would_install and "mailbot" not in would_install


def test_demo_runs_from_any_directory_and_answers_the_demo_mails(installed, elsewhere):
    demo = installed("demo", "--dir", "d", cwd=elsewhere)
    root = elsewhere / "d"
    assert f"run: {DEMO_MAILS} mail(s) in the inbox, {DEMO_MAILS} decided" in demo.stdout
    assert "registry: 11 licence(s) added" in demo.stdout
    assert sorted(p.name for p in elsewhere.iterdir()) == ["d"]  # no staging folder left
    assert {"config.toml", "inbox", "outbox", "mailbot.db", "registry.csv",
            "keys.csv"} <= {p.name for p in root.iterdir()}
    replies = list((root / "outbox").glob("*.eml"))
    assert len(replies) >= 10
    assert not any((root / "inbox" / "new").iterdir())  # every mail was filed
    assert f"mailbot --config {root / 'config.toml'} log" in demo.stdout

    log = installed("--config", root / "config.toml", "log", "--json", cwd=elsewhere)
    entries = [json.loads(line) for line in log.stdout.splitlines()]
    assert len(entries) == DEMO_MAILS

    again = installed("demo", "--dir", "d", cwd=elsewhere)
    assert "run: 0 mail(s) in the inbox" in again.stdout
    assert len(list((root / "outbox").glob("*.eml"))) == len(replies)  # nothing answered twice
