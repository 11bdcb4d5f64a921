"""Reading the licence registry and the key pool: good files in, every bad row named, all or nothing."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import openpyxl
import pytest

from mailbot.errors import ImportError_, MailbotError
from mailbot.ops.imports import BadRowsError, KeyRecord, LicenceRecord, read_keys, read_registry
from mailbot.ruleset import Catalogue, System

DATA = Path(__file__).parent / "data" / "registry"
HEADER = "serial,system,company,contact_email,purchase_date,modality,support_until,users"
GOOD_ROW = ("AAAA-BBBB-CCCC-DDDD,CONTPAQ i Factura electrónica,\"Empresa de muestra, S.A. de C.V.\","
            "rgonzalez@empresamuestra.com.mx,2011-09-15,electronico,2099-12-31,2")


@pytest.fixture
def catalogue() -> Catalogue:
    return Catalogue(systems=(
        System("CONTPAQ i Factura electrónica", ("Factura electrónica",)),
        System("CONTPAQ i Contabilidad", ("Contabilidad",)),
        System("CONTPAQ i Nóminas", ("Nóminas", "CONTPAQi Nomina")),
        System("CONTPAQ i Bancos", ("Bancos",)),
        System("CONTPAQ i Comercial", ("Comercial",)),
        System("CONTPAQ i Punto de venta", ("Punto de venta",)),
        System("Aspel FACTURE", ("FACTURE",)),
    ), min_score=88)


def write(tmp_path: Path, text: str, name: str = "registro.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(exc: pytest.ExceptionInfo[ImportError_]) -> list[tuple[str, str]]:
    """(line, column) of every problem, e.g. ("line 5", "purchase_date")."""
    assert isinstance(exc.value, BadRowsError)
    return [tuple(p.split(": ")[:2]) for p in exc.value.problems]  # type: ignore[misc]


# --- good registries ----------------------------------------------------------------------------

def test_read_registry_reads_csv_with_headers_in_any_order_and_case(catalogue):
    records = read_registry(DATA / "registry_good.csv", catalogue)

    assert records == [
        LicenceRecord("AAAA-BBBB-CCCC-DDDD", "CONTPAQ i Factura electrónica",
                      "Empresa de muestra, S.A. de C.V.", "rgonzalez@empresamuestra.com.mx",
                      dt.date(2011, 9, 15), "electronico", dt.date(2099, 12, 31), 2),
        LicenceRecord("AAAA-BBBB-CCCC-EEEE", "CONTPAQ i Contabilidad",
                      "Empresa de muestra, S.A. de C.V.", "rgonzalez@empresamuestra.com.mx",
                      dt.date(2011, 11, 3), "electronico", None, 5),
        LicenceRecord("K7Q2-M9XD-41PL-ZT8R", "CONTPAQ i Comercial", "Ferretería El Tornillo, S.A. de C.V.",
                      None, dt.date(2010, 11, 15), "fisico", None, None),
        LicenceRecord("R8TZ-5N1Q-6WHK-2JCE", "CONTPAQ i Comercial",
                      "Taller Mecánico Hermanos Ruiz, S.A. de C.V.",
                      "administracion@tallerhermanosruiz.com.mx", dt.date(2012, 3, 1), "suscripcion",
                      dt.date(2099, 12, 31), 2),
    ]


def test_read_registry_reads_xlsx_from_another_writer_with_date_cells_and_only_its_first_sheet(catalogue):
    records = read_registry(DATA / "registry_xlsxwriter.xlsx", catalogue)

    assert [(r.serial, r.system, r.purchase_date, r.support_until, r.users, r.modality) for r in records] == [
        ("AAAA-BBBB-CCCC-DDDD", "CONTPAQ i Factura electrónica", dt.date(2011, 9, 15),
         dt.date(2099, 12, 31), 2, "electronico"),
        ("AAAA-BBBB-CCCC-FFFF", "CONTPAQ i Nóminas", dt.date(2011, 8, 22), dt.date(2012, 8, 21), 10,
         "fisico"),
        ("S3CA-9M4L-T2XV-7PQE", "Aspel FACTURE", dt.date(2011, 12, 12), None, 20, "fisico"),
    ]


def test_read_registry_reads_xlsx_written_by_openpyxl(tmp_path, catalogue):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER.split(","))
    sheet.append(["aaaa bbbb cccc gggg", "Bancos", "Empresa de muestra, S.A. de C.V.",
                  "rgonzalez@empresamuestra.com.mx", dt.datetime(2012, 1, 10), "Suscripción", None, 1])
    path = tmp_path / "registro.xlsx"
    book.save(path)

    assert read_registry(path, catalogue) == [
        LicenceRecord("AAAA-BBBB-CCCC-GGGG", "CONTPAQ i Bancos", "Empresa de muestra, S.A. de C.V.",
                      "rgonzalez@empresamuestra.com.mx", dt.date(2012, 1, 10), "suscripcion", None, 1)]


def test_read_registry_reads_what_spanish_excel_saves_as_csv(catalogue):
    records = read_registry(DATA / "registry_excel_es.csv", catalogue)  # Windows-1252, ";", CRLF

    assert [(r.serial, r.company, r.modality) for r in records] == [
        ("D4LN-8P2Q-77XK-M3WA", "Distribuidora Lomas del Norte, S.A. de C.V.", "electronico"),
        ("P7VT-3K9D-2LMX-8QRW", "Abarrotes Doña Lupita", "electronico"),
    ]


@pytest.mark.parametrize("written, modality", [
    ("suscripcion", "suscripcion"), ("Suscripción", "suscripcion"), ("SUSCRIPCIÓN", "suscripcion"),
    ("electrónico", "electronico"), ("Licencia electrónica", "electronico"),
    ("Físico", "fisico"), ("fisica", "fisico"), ("  FISICO ", "fisico"),
])
def test_read_registry_accepts_modality_with_accents_case_and_licencia(tmp_path, catalogue, written, modality):
    row = GOOD_ROW.replace(",electronico,", f",{written},")
    [record] = read_registry(write(tmp_path, f"{HEADER}\n{row}\n"), catalogue)
    assert record.modality == modality


def test_read_registry_ignores_extra_columns(tmp_path, catalogue):
    path = write(tmp_path, f"{HEADER},vendedor,notas\n{GOOD_ROW},Luis,renovó en 2012\n")
    [record] = read_registry(path, catalogue)
    assert record.serial == "AAAA-BBBB-CCCC-DDDD"


def test_read_registry_keeps_a_date_cell_written_with_midnight_time(tmp_path, catalogue):
    row = GOOD_ROW.replace("2011-09-15", "2011-09-15 00:00:00")
    [record] = read_registry(write(tmp_path, f"{HEADER}\n{row}\n"), catalogue)
    assert record.purchase_date == dt.date(2011, 9, 15)


# --- bad rows -----------------------------------------------------------------------------------

def test_read_registry_names_every_bad_row_with_its_line_column_and_fix(catalogue):
    with pytest.raises(ImportError_) as exc:
        read_registry(DATA / "registry_bad.csv", catalogue)

    assert problems_of(exc) == [
        ("line 3", "serial"),
        ("line 4", "system"),
        ("line 5", "purchase_date"),
        ("line 6", "modality"),
        ("line 7", "contact_email"),
        ("line 8", "support_until"),
        ("line 9", "users"),
        ("line 10", "company"),
        ("line 11", "serial"),
        ("line 12", "serial"),
        ("line 12", "purchase_date"),
        ("line 12", "modality"),
    ]
    message = str(exc.value)
    assert message.startswith(f"{DATA / 'registry_bad.csv'}: 10 rows are wrong, nothing was imported")
    assert "line 5: purchase_date: '2011/13/01' is not a date; write YYYY-MM-DD" in message
    assert "line 3: serial: 'AAAA-BBBB-CCCC' is not a serial number; write four groups" in message
    assert "line 4: system: 'SAP Business One' is not a system of the catalogue (rules/catalogue.toml)" in message
    assert "line 6: modality: 'anual' is not a modality; write one of suscripcion, electronico, fisico" in message
    assert "line 7: contact_email: 'mlopez@' is not an e-mail address" in message
    assert "line 8: support_until: '31/12/2012' is not a date; write YYYY-MM-DD" in message
    assert "line 9: users: 'dos' is not a number of users" in message
    assert "line 10: company: empty" in message
    assert "line 11: serial: AAAA-BBBB-CCCC-DDDD is also on line 2" in message
    assert "line 12: serial: empty" in message


def test_read_registry_imports_nothing_when_a_single_row_is_bad(tmp_path, catalogue):
    rows = [GOOD_ROW.replace("DDDD", suffix) for suffix in ("DDDD", "EEEE", "FFFF")]
    rows[1] = rows[1].replace("2011-09-15", "15/09/2011")
    path = write(tmp_path, "\n".join([HEADER, *rows]) + "\n")

    with pytest.raises(ImportError_) as exc:
        read_registry(path, catalogue)

    assert exc.value.problems == (  # type: ignore[attr-defined]
        "line 3: purchase_date: '15/09/2011' is not a date; write YYYY-MM-DD, e.g. 2011-07-15",)
    assert "1 row is wrong, nothing was imported" in str(exc.value)


def test_read_registry_unknown_system_names_the_catalogue_file_given(tmp_path, catalogue):
    row = GOOD_ROW.replace("CONTPAQ i Factura electrónica", "Facturador Plus")
    with pytest.raises(ImportError_, match=r"line 2: system: 'Facturador Plus' is not a system of the "
                                           r"catalogue \(/srv/mailbot/rules/catalogue.toml\)"):
        read_registry(write(tmp_path, f"{HEADER}\n{row}\n"), catalogue,
                      catalogue_file="/srv/mailbot/rules/catalogue.toml")


def test_read_registry_duplicate_serials_are_found_in_any_spelling(tmp_path, catalogue):
    second = GOOD_ROW.replace("AAAA-BBBB-CCCC-DDDD", "aaaa bbbb cccc dddd")
    with pytest.raises(ImportError_) as exc:
        read_registry(write(tmp_path, f"{HEADER}\n{GOOD_ROW}\n\n{second}\n"), catalogue)
    assert exc.value.problems == (  # type: ignore[attr-defined]
        "line 4: serial: AAAA-BBBB-CCCC-DDDD is also on line 2; a serial may appear only once, "
        "keep one of the two rows",)


@pytest.mark.parametrize("users", ["0", "-3", "2.5", "dos", "１"])
def test_read_registry_refuses_users_that_are_not_a_positive_whole_number(tmp_path, catalogue, users):
    row = GOOD_ROW[: GOOD_ROW.rindex(",") + 1] + users
    with pytest.raises(ImportError_, match="line 2: users: .* is not a number of users"):
        read_registry(write(tmp_path, f"{HEADER}\n{row}\n"), catalogue)


def test_read_registry_refuses_an_impossible_date(tmp_path, catalogue):
    row = GOOD_ROW.replace("2011-09-15", "2011-02-30")
    with pytest.raises(ImportError_, match="line 2: purchase_date: '2011-02-30' is not a date"):
        read_registry(write(tmp_path, f"{HEADER}\n{row}\n"), catalogue)


# --- files that cannot be read at all -----------------------------------------------------------

def test_read_registry_names_missing_columns_and_the_headers_it_did_not_recognise(catalogue):
    with pytest.raises(ImportError_) as exc:
        read_registry(DATA / "registry_missing_columns.csv", catalogue)
    message = str(exc.value)
    assert message.startswith(f"{DATA / 'registry_missing_columns.csv'}: line 1: missing columns "
                              "support_until, users;")
    assert "(not recognised: 'suport_until')" in message


def test_read_registry_missing_file(tmp_path, catalogue):
    path = tmp_path / "no-existe.csv"
    with pytest.raises(ImportError_) as exc:
        read_registry(path, catalogue)
    assert str(exc.value) == f"{path}: no such file"


def test_import_errors_are_errors_the_cli_prints_as_one_line(tmp_path, catalogue):
    with pytest.raises(MailbotError):
        read_keys(tmp_path / "claves.csv", catalogue)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_read_registry_empty_file_says_which_columns_it_needs(tmp_path, catalogue, content):
    with pytest.raises(ImportError_, match="the file is empty; it needs a header row with the columns "
                                           "serial, system, company"):
        read_registry(write(tmp_path, content), catalogue)


def test_read_registry_header_without_rows_is_refused(tmp_path, catalogue):
    with pytest.raises(ImportError_, match="no licences below the header; nothing to import"):
        read_registry(write(tmp_path, HEADER + "\n"), catalogue)


def test_read_registry_column_written_twice_is_refused(tmp_path, catalogue):
    with pytest.raises(ImportError_, match="the column serial appears twice"):
        read_registry(write(tmp_path, f"{HEADER},Serial\n{GOOD_ROW},AAAA-BBBB-CCCC-DDDD\n"), catalogue)


def test_read_registry_corrupt_xlsx_is_an_import_error_naming_the_file(tmp_path, catalogue):
    path = tmp_path / "registro.xlsx"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(ImportError_, match=rf"^{path}: registro.xlsx: the file is damaged"):
        read_registry(path, catalogue)


def test_read_registry_refuses_a_directory(tmp_path, catalogue):
    with pytest.raises(ImportError_, match="is a directory"):
        read_registry(tmp_path, catalogue)


def test_read_registry_row_limit(tmp_path, catalogue):
    rows = [GOOD_ROW.replace("DDDD", f"{n:04d}") for n in range(3)]
    path = write(tmp_path, "\n".join([HEADER, *rows]) + "\n")
    assert len(read_registry(path, catalogue, max_rows=3)) == 3
    with pytest.raises(ImportError_, match="more than 2 rows; split the file"):
        read_registry(path, catalogue, max_rows=2)


# --- keys ---------------------------------------------------------------------------------------

def test_read_keys_reads_systems_by_alias_and_strips_keys(catalogue):
    assert read_keys(DATA / "keys_good.csv", catalogue) == [
        KeyRecord("CONTPAQ i Factura electrónica", "2012-7XBMH-9S4YV-SSRZD-WNSTC"),
        KeyRecord("CONTPAQ i Factura electrónica", "2012-BYMRM-QUCJU-VV53K-KXF5X"),
        KeyRecord("CONTPAQ i Contabilidad", "2012-Q4LNT-8HWJ2-MZ6RA-P3KDE"),
        KeyRecord("CONTPAQ i Nóminas", "2012-T7GYV-2NXQD-KR4MA-J8WPE"),
    ]


def test_read_keys_names_duplicates_with_both_lines_and_every_other_bad_row(catalogue):
    with pytest.raises(ImportError_) as exc:
        read_keys(DATA / "keys_bad.csv", catalogue)

    assert exc.value.problems == (  # type: ignore[attr-defined]
        "line 4: system: 'SAP Business One' is not a system of the catalogue (rules/catalogue.toml); "
        "write one of its names or aliases, or add the system there first",
        "line 5: key: empty; write the key, or remove the row",
        "line 6: key: '2012-7XBMH-9S4YV-SSRZD-WNSTC' is also on line 2; each key may appear only "
        "once, remove one of the two rows",
    )
    assert "3 rows are wrong, nothing was imported" in str(exc.value)


def test_read_keys_imports_nothing_when_one_key_is_bad(tmp_path, catalogue):
    path = write(tmp_path, "system,key\nBancos,2012-AAAAA\nBancos,2012-BBBBB\nBancas y Cajas,2012-CCCCC\n",
                 "claves.csv")
    with pytest.raises(ImportError_, match="1 row is wrong, nothing was imported"):
        read_keys(path, catalogue)


def test_read_keys_from_xlsx_with_header_in_capitals(tmp_path, catalogue):
    book = openpyxl.Workbook()
    book.active.append(["KEY", "SYSTEM"])
    book.active.append(["2012-AAAAA-BBBBB", "Aspel Facture"])
    buffer = io.BytesIO()
    book.save(buffer)
    path = tmp_path / "claves.xlsx"
    path.write_bytes(buffer.getvalue())

    assert read_keys(path, catalogue) == [KeyRecord("Aspel FACTURE", "2012-AAAAA-BBBBB")]


def test_read_keys_missing_key_column(tmp_path, catalogue):
    path = write(tmp_path, "system,clave\nBancos,2012-AAAAA\n", "claves.csv")
    with pytest.raises(ImportError_, match=r"line 1: missing column key; .*\(not recognised: 'clave'\)"):
        read_keys(path, catalogue)
