"""Writes the binary sample files of this folder; run it again only to change them.

    .venv/bin/python tests/data/registry/make_samples.py

- registry_xlsxwriter.xlsx: a registry as another tool exports it (xlsxwriter, not openpyxl):
  real date cells, numeric users, the header in another order, a second "Notas" sheet that the
  import must not read.
- registry_excel_es.csv: what Excel in Spanish saves as "CSV": Windows-1252, semicolons, CRLF.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import xlsxwriter

HERE = Path(__file__).parent


def registry_xlsx(path: Path) -> None:
    book = xlsxwriter.Workbook(str(path))
    book.set_properties({"author": "Sistemas", "created": dt.datetime(2012, 1, 10, 9, 0)})
    date = book.add_format({"num_format": "dd/mm/yyyy"})
    bold = book.add_format({"bold": True})
    sheet = book.add_worksheet("Licencias")
    header = ["Serial", "System", "Company", "Purchase_Date", "Support_Until", "Users",
              "Modality", "Contact_Email"]
    sheet.write_row(0, 0, header, bold)
    rows = [
        ["AAAA-BBBB-CCCC-DDDD", "CONTPAQ i Factura electrónica", "Empresa de muestra, S.A. de C.V.",
         dt.date(2011, 9, 15), dt.date(2099, 12, 31), 2, "electronico", "rgonzalez@empresamuestra.com.mx"],
        ["AAAA-BBBB-CCCC-FFFF", "CONTPAQ i Nóminas", "Empresa de muestra, S.A. de C.V.",
         dt.date(2011, 8, 22), dt.date(2012, 8, 21), 10, "Físico", "rgonzalez@empresamuestra.com.mx"],
        None,  # a blank row between entries
        ["S3CA-9M4L-T2XV-7PQE", "Aspel FACTURE", "Servicios Contables Álvarez, S.C.",
         dt.date(2011, 12, 12), None, 20, "FISICO", "salvarez@contablesalvarez.com.mx"],
    ]
    for index, row in enumerate(rows, start=1):
        if row is None:
            continue
        for column, value in enumerate(row):
            if isinstance(value, dt.date):
                sheet.write_datetime(index, column, dt.datetime.combine(value, dt.time()), date)
            elif value is not None:
                sheet.write(index, column, value)
    notes = book.add_worksheet("Notas")
    notes.write_row(0, 0, ["Exportado del CRM", "no importar esta hoja"])
    book.close()


def registry_excel_es(path: Path) -> None:
    lines = [
        "serial;system;company;contact_email;purchase_date;modality;support_until;users",
        "D4LN-8P2Q-77XK-M3WA;CONTPAQ i Contabilidad;Distribuidora Lomas del Norte, S.A. de C.V.;"
        "mlopez@lomasdelnorte.com.mx;2012-02-20;Electrónico;2099-12-31;3",
        "P7VT-3K9D-2LMX-8QRW;CONTPAQ i Punto de venta;Abarrotes Doña Lupita;"
        "abarrotes.dona.lupita@gmail.com;2011-10-05;electrónico;;1",
    ]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))


if __name__ == "__main__":
    registry_xlsx(HERE / "registry_xlsxwriter.xlsx")
    registry_excel_es(HERE / "registry_excel_es.csv")
