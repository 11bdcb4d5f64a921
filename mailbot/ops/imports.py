"""Reading the licence registry and the key pool from the files operators import.

Parsing and validation only: this module turns a CSV or XLSX file into checked records, or
refuses the whole file. Writing the records to the store is the store's job.

Both readers are all-or-nothing: every bad row is collected and reported at once (line, column,
what is wrong and how to fix it), and a file with any bad row yields no record at all, so an
operator never ends up with half a registry. `check_registry` and `check_keys` return both the
good rows (with their lines) and the problems, for the import preview
(mailbot.ops.import_preview) to show what the file would add, change and refuse. A problem's
reason and fix are Words (mailbot.wording: an N_() template and its values), so the CLI
prints them in English and the console says the same problem in Spanish.

File layout (both kinds):
- the first non-blank row of the first sheet that has data is the header; other sheets are not
  read (a workbook may keep notes on a second sheet);
- header names are matched ignoring case, accents, surrounding spaces, spaces/dashes written for
  underscores and a trailing "(...)" hint, in any order: "Purchase date (YYYY-MM-DD)" is
  `purchase_date`;
- extra columns are ignored (exports from other tools carry columns we do not need), but every
  expected column must be present; when one is missing, the error also lists the columns that
  were not recognised, which is where a misspelt header usually is;
- blank rows are skipped; "line N" is the row's number in the file (the row number the
  spreadsheet program shows, for XLSX).
- CSV files may be UTF-8 (with or without BOM), UTF-16 or Windows-1252, separated by commas,
  semicolons or tabs (what `mailbot.read.sheets` reads);
- a cell "'=..." (a quote before what starts like a formula) is read without the quote: our
  CSV exports neutralise such cells that way, and must import back unchanged.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailbot.answer.cells import formula_like
from mailbot.errors import ImportError_
from mailbot.read.fields import SystemMatcher, normalise_serial, parse_email
from mailbot.read.sheets import SheetError, SheetRow, TooManyRows, iter_rows
from mailbot.ruleset import Catalogue
from mailbot.wording import N_, Words

REGISTRY_COLUMNS: tuple[str, ...] = (
    "serial", "system", "company", "contact_email", "purchase_date", "modality", "support_until",
    "users",
)
KEY_COLUMNS: tuple[str, ...] = ("system", "key")

MODALITIES: tuple[str, ...] = ("suscripcion", "electronico", "fisico")
# Spellings accepted for each modality once accents, case and a "licencia" prefix are dropped.
_MODALITY_SPELLINGS = {
    "suscripcion": "suscripcion",
    "subscripcion": "suscripcion",
    "subscription": "suscripcion",
    "electronico": "electronico",
    "electronica": "electronico",
    "electronic": "electronico",
    "fisico": "fisico",
    "fisica": "fisico",
    "physical": "fisico",
}

DEFAULT_MAX_ROWS = 200_000  # an import is an operator's deliberate act: generous, but bounded
_MAX_KEY_LENGTH = 200
_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})(?:[T ]00:00(?::00(?:\.0+)?)?)?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class LicenceRecord:
    """One row of the licence registry: who owns a serial, and what they bought."""

    serial: str  # normalised: AAAA-BBBB-CCCC-DDDD
    system: str  # the catalogue's canonical name
    company: str
    contact_email: str | None  # the only address keys for this serial may go to; None: review
    purchase_date: dt.date
    modality: str  # one of MODALITIES
    support_until: dt.date | None  # last day of the support policy; None: no policy
    users: int | None


@dataclass(frozen=True)
class KeyRecord:
    """One key of the pool, for one system (canonical name)."""

    system: str
    key: str


class Worded:
    """What a bad row says: `line`, `column` and the Words of its reason and fix, in English
    for the CLI (`reason`, `fix`, `text`); the console says the Words through its catalogue.
    Shared by a row's check (Problem) and an import's refusal (import_preview.Refusal)."""

    line: int
    column: str
    reason_words: Words
    fix_words: Words

    @property
    def reason(self) -> str:
        return self.reason_words.say()

    @property
    def fix(self) -> str:
        return self.fix_words.say()

    @property
    def text(self) -> str:
        """"line N: column: reason; fix", the one line the CLI prints."""
        return f"line {self.line}: {self.column}: {self.reason}" + (
            f"; {self.fix}" if self.fix else "")


@dataclass(frozen=True)
class Problem(Worded):
    """One bad cell: its line in the file, its column (canonical name), what is wrong and how to
    fix it, as Words: `reason` and `fix` in English for the CLI, the console says them through
    its catalogue."""

    line: int
    column: str
    reason_words: Words
    fix_words: Words = Words("")



@dataclass(frozen=True)
class Checked:
    """A file read and checked row by row: the good rows with their line, every problem, and
    how many distinct rows are bad. The import preview shows both; an import needs `problems`
    empty (all or nothing)."""

    name: str
    rows: tuple[tuple[int, Any], ...]  # (line, LicenceRecord or KeyRecord)
    problems: tuple[Problem, ...]
    headers: tuple[tuple[str, str], ...] = ()  # (canonical column, its header as written)

    @property
    def bad_rows(self) -> int:
        return len({p.line for p in self.problems})

    def records(self) -> list[Any]:
        """The records, or BadRowsError naming every problem."""
        if self.problems:
            raise BadRowsError(Path(self.name), [p.text for p in self.problems],
                               rows=self.bad_rows, details=self.problems)
        return [record for _, record in self.rows]


class BadRowsError(ImportError_):
    """A file with bad rows: `problems` holds one "line N: column: what to fix" per problem,
    `details` the same as Problem values."""

    def __init__(self, path: Path, problems: Sequence[str], rows: int,
                 details: Sequence[Problem] = ()) -> None:
        self.path = path
        self.problems = tuple(problems)
        self.details = tuple(details)
        self.rows = rows  # how many distinct rows are bad
        what = "row is" if rows == 1 else "rows are"
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{path}: {rows} {what} wrong, nothing was imported; "
                         f"fix them and import the file again:\n{lines}")


def read_registry(path: Path, catalogue: Catalogue, *,
                  catalogue_file: str | Path = "rules/catalogue.toml",
                  max_rows: int = DEFAULT_MAX_ROWS) -> list[LicenceRecord]:
    """Every licence in a registry file, or ImportError_ naming every bad row.

    `catalogue_file` is only named in messages about unknown systems, so the admin knows where
    to add one.
    """
    path = Path(path)
    return check_registry(str(path), read_file(path), catalogue, catalogue_file=catalogue_file,
                          max_rows=max_rows).records()


def read_keys(path: Path, catalogue: Catalogue, *,
              catalogue_file: str | Path = "rules/catalogue.toml",
              max_rows: int = DEFAULT_MAX_ROWS) -> list[KeyRecord]:
    """Every key in a key-pool file, or ImportError_ naming every bad row.

    A key written twice in the file is an error naming both lines. Keys already in the store are
    the store's business, not this reader's.
    """
    path = Path(path)
    return check_keys(str(path), read_file(path), catalogue, catalogue_file=catalogue_file,
                      max_rows=max_rows).records()


def check_registry(name: str, payload: bytes, catalogue: Catalogue, *,
                   catalogue_file: str | Path = "rules/catalogue.toml",
                   max_rows: int = DEFAULT_MAX_ROWS) -> Checked:
    """A registry file's bytes (`name` tells CSV from XLSX and names the file in messages),
    checked row by row; ImportError_ when the file as a whole cannot be read (no header, a
    missing column...)."""
    headers, rows = _read_table(name, payload, REGISTRY_COLUMNS, what="licences",
                                max_rows=max_rows)
    matcher = SystemMatcher(catalogue)
    problems = _Problems()
    records: list[tuple[int, LicenceRecord]] = []
    first_line_of_serial: dict[str, int] = {}
    for line, values in rows:
        check = _RowCheck(line, values, problems)
        serial = check.serial("serial")
        system = check.system("system", matcher, catalogue_file)
        company = check.required("company", Words(N_("write the customer's company or person "
                                                      "name")))
        contact_email = check.email("contact_email")
        purchase_date = check.date("purchase_date", required=True)
        modality = check.modality("modality")
        support_until = check.date("support_until", required=False)
        users = check.users("users")
        if serial is not None:
            if serial in first_line_of_serial:
                check.fail("serial", Words.of(N_("%(value)s is also on line %(line)s"),
                                              value=serial, line=first_line_of_serial[serial]),
                           Words(N_("a serial may appear only once, keep one of the two rows")))
            else:
                first_line_of_serial[serial] = line
        if check.ok:
            records.append((line, LicenceRecord(
                serial=serial, system=system, company=company,  # type: ignore[arg-type]
                contact_email=contact_email, purchase_date=purchase_date,  # type: ignore[arg-type]
                modality=modality, support_until=support_until, users=users,  # type: ignore[arg-type]
            )))
    return Checked(name, tuple(records), problems.ordered(), headers)


def check_keys(name: str, payload: bytes, catalogue: Catalogue, *,
               catalogue_file: str | Path = "rules/catalogue.toml",
               max_rows: int = DEFAULT_MAX_ROWS) -> Checked:
    """A key-pool file's bytes checked row by row (see check_registry)."""
    headers, rows = _read_table(name, payload, KEY_COLUMNS, what="keys", max_rows=max_rows)
    matcher = SystemMatcher(catalogue)
    problems = _Problems()
    records: list[tuple[int, KeyRecord]] = []
    first_line_of_key: dict[str, int] = {}
    for line, values in rows:
        check = _RowCheck(line, values, problems)
        system = check.system("system", matcher, catalogue_file)
        key = check.key("key")
        if key is not None:
            if key in first_line_of_key:
                check.fail("key", Words.of(N_("%(value)s is also on line %(line)s"),
                                           value=_show(key), line=first_line_of_key[key]),
                           Words(N_("each key may appear only once, remove one of the two "
                                    "rows")))
            else:
                first_line_of_key[key] = line
        if check.ok:
            records.append((line, KeyRecord(system=system, key=key)))  # type: ignore[arg-type]
    return Checked(name, tuple(records), problems.ordered(), headers)


# --- reading the table -------------------------------------------------------------------------

def read_file(path: Path) -> bytes:
    """The bytes of an import file, or an ImportError_ naming it and what is wrong."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImportError_(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImportError_(f"{path}: is a directory, not a CSV or XLSX file") from None
    except OSError as exc:
        raise ImportError_(f"{path}: cannot read: {exc.strerror or exc}") from None


def _read_table(path: str, payload: bytes, columns: tuple[str, ...], *, what: str,
                max_rows: int
                ) -> tuple[tuple[tuple[str, str], ...], list[tuple[int, dict[str, str]]]]:
    """The header of file `path` (its bytes: `payload`) as ((column, as written), ...), checked,
    and its data rows as (line, {column: stripped text})."""
    expected = ", ".join(columns)
    if not payload.strip():
        raise ImportError_(f"{path}: the file is empty; it needs a header row with the columns "
                           f"{expected}, then one row per entry")
    try:  # max_rows data rows, plus the header row
        sheet_rows = list(iter_rows(Path(path).name, payload, max_rows=max_rows + 1))
    except TooManyRows:
        raise ImportError_(f"{path}: more than {max_rows} rows; split the file and import "
                           "each part") from None
    except SheetError as exc:
        raise ImportError_(f"{path}: {exc.detail}") from None

    header: SheetRow | None = None
    data: list[SheetRow] = []
    for row in sheet_rows:
        if header is None:
            if _is_blank(row.cells):
                continue
            header = row
        elif row.sheet == header.sheet and not _is_blank(row.cells):
            data.append(row)
    if header is None:
        raise ImportError_(f"{path}: no header row; the first row must name the columns {expected}")

    positions: dict[str, int] = {}
    unrecognised: list[str] = []
    for index, cell in enumerate(header.cells):
        name = _column_key(cell)
        if not name:
            continue
        if name in columns:
            if name in positions:
                raise ImportError_(f"{path}: line {header.row_number}: the column {name} "
                                   "appears twice in the header; keep one")
            positions[name] = index
        else:
            unrecognised.append(cell.strip())
    missing = [c for c in columns if c not in positions]
    if missing:
        message = (f"{path}: line {header.row_number}: "
                   f"missing column{'s' if len(missing) > 1 else ''} "
                   f"{', '.join(missing)}; the header must name the columns {expected}")
        if unrecognised:
            message += f" (not recognised: {', '.join(_show(c) for c in unrecognised)})"
        raise ImportError_(message)
    if not data:
        raise ImportError_(f"{path}: no {what} below the header; nothing to import")

    out = []
    for row in data:
        values = {name: unquote(row.cells[i].strip() if i < len(row.cells) else "")
                  for name, i in positions.items()}
        out.append((row.row_number, values))
    headers = tuple((name, header.cells[i].strip()) for name, i in positions.items())
    return headers, out


def unquote(cell: str) -> str:
    """A cell our exports neutralised against formula injection ("'=..."), as it was: the CSV
    export writes a quote before a cell that starts like a formula, and the file it wrote must
    import back unchanged. A quote before anything else is the cell's own."""
    if cell.startswith("'") and formula_like(cell[1:]):
        return cell[1:]
    return cell


def _is_blank(cells: Iterable[str]) -> bool:
    return all(not c.strip() for c in cells)


def _fold(text: str) -> str:
    """Lower case without accents: how people's spellings of one word are compared."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold().strip()


def _column_key(cell: str) -> str:
    text = re.sub(r"\(.*\)\s*$", "", _fold(cell))  # "purchase_date (YYYY-MM-DD)"
    return re.sub(r"[\s\-]+", "_", text.strip()).strip("_")


def _show(value: str, limit: int = 60) -> str:
    """A cell value quoted for a one-line message, however long or odd it is."""
    text = _CONTROL.sub(" ", value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"'{text}'"


# --- checking one row ---------------------------------------------------------------------------

class _Problems:
    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, line: int, column: str, reason: Words, fix: Words) -> None:
        self.items.append(Problem(line, column, reason, fix))

    def ordered(self) -> tuple[Problem, ...]:
        # sorted() is stable: within a line, the columns keep their order.
        return tuple(sorted(self.items, key=lambda p: p.line))


class _RowCheck:
    """Checks the cells of one row; each method returns the clean value or None and a problem."""

    def __init__(self, line: int, values: dict[str, str], problems: _Problems) -> None:
        self.line = line
        self.values = values
        self.problems = problems
        self.ok = True

    def fail(self, column: str, reason: Words, fix: Words) -> None:
        """`reason`: what is wrong; `fix`: how to fix it (templates marked N_, and values)."""
        self.ok = False
        self.problems.add(self.line, column, reason, fix)

    def wrong(self, column: str, raw: str, what: str, fix: Words) -> None:
        """The cell `raw` is not what `what` ("%(value)s is not a date") says it must be."""
        self.fail(column, Words.of(what, value=_show(raw)), fix)

    def required(self, column: str, fix: Words) -> str | None:
        value = self.values[column]
        if not value:
            self.fail(column, Words(N_("empty")), fix)
            return None
        return value

    def serial(self, column: str) -> str | None:
        raw = self.required(column, Words(N_("every row needs its serial number, e.g. "
                                             "AAAA-BBBB-CCCC-DDDD")))
        if raw is None:
            return None
        serial = normalise_serial(raw)
        if serial is None:
            self.wrong(column, raw, N_("%(value)s is not a serial number"),
                       Words(N_("write four groups of four letters or digits, e.g. "
                                "AAAA-BBBB-CCCC-DDDD")))
        return serial

    def system(self, column: str, matcher: SystemMatcher, catalogue_file: str | Path) -> str | None:
        raw = self.required(column, Words.of(N_("write the system's name as in the catalogue "
                                                "(%(catalogue)s)"), catalogue=str(catalogue_file)))
        if raw is None:
            return None
        system = matcher.match(raw)
        if system is None:
            self.fail(column, Words.of(N_("%(value)s is not a system of the catalogue "
                                          "(%(catalogue)s)"),
                                       value=_show(raw), catalogue=str(catalogue_file)),
                      Words(N_("write one of its names or aliases, or add the system there "
                               "first")))
        return system

    def email(self, column: str) -> str | None:
        raw = self.values[column]
        if not raw:
            return None  # allowed: requests for this serial then go to review
        address = parse_email(raw)
        if address is None:
            self.wrong(column, raw, N_("%(value)s is not an e-mail address"),
                       Words(N_("write one address such as nombre@empresa.com.mx, or leave it "
                                "empty")))
        return address

    def date(self, column: str, *, required: bool) -> dt.date | None:
        raw = self.values[column]
        if not raw:
            if required:
                self.fail(column, Words(N_("empty")),
                          Words(N_("write the date as YYYY-MM-DD, e.g. 2011-07-15")))
            return None
        match = _DATE.fullmatch(raw)
        try:
            if match is None:
                raise ValueError(raw)
            return dt.date.fromisoformat(match.group(1))
        except ValueError:
            fix = (N_("write YYYY-MM-DD, e.g. 2011-07-15") if required
                   else N_("write YYYY-MM-DD, e.g. 2011-07-15, or leave it empty"))
            self.wrong(column, raw, N_("%(value)s is not a date"), Words(fix))
            return None

    def modality(self, column: str) -> str | None:
        one_of = Words.of(N_("write one of %(modalities)s"), modalities=", ".join(MODALITIES))
        raw = self.required(column, one_of)
        if raw is None:
            return None
        word = re.sub(r"^licencia\s+(de\s+)?", "", _fold(raw)).strip(" .")
        modality = _MODALITY_SPELLINGS.get(word)
        if modality is None:
            self.wrong(column, raw, N_("%(value)s is not a modality"), one_of)
        return modality

    def users(self, column: str) -> int | None:
        raw = self.values[column]
        if not raw:
            return None
        if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
            self.wrong(column, raw, N_("%(value)s is not a number of users"),
                       Words(N_("write a whole number such as 5, or leave it empty")))
            return None
        return int(raw)

    def key(self, column: str) -> str | None:
        raw = self.required(column, Words(N_("write the key, or remove the row")))
        if raw is None:
            return None
        if _CONTROL.search(raw):
            self.wrong(column, raw, N_("%(value)s contains a tab or line break"),
                       Words(N_("write the key on one line")))
            return None
        if len(raw) > _MAX_KEY_LENGTH:
            self.fail(column, Words.of(N_("%(length)s characters long"), length=len(raw)),
                      Words.of(N_("a key has at most %(limit)s"), limit=_MAX_KEY_LENGTH))
            return None
        return raw
