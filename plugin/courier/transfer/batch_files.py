"""Pure: batch files (CSV or XLSX) -> validated rows, or every error with its line and column.

Two kinds, as ADIT has them:

    transfer   PatientID, StudyInstanceUID, [SeriesInstanceUID], [Pseudonym], [ID]
    query      PatientID | PatientName + PatientBirthDate, [AccessionNumber], [StudyDate],
               [ModalitiesInStudy], [StudyDescription], [ID]

The whole file is checked before anything runs, and the report names every problem of the file
at once (a missing column does not hide the bad cells of the others) by line (as a spreadsheet
numbers them, header = 1) and column; one problem stops the batch. Cross-row
checks: a study belongs to one patient, a patient has one pseudonym.
"""
from __future__ import annotations

import csv
import datetime
import io
import re
from dataclasses import dataclass, field
from typing import Any

from courier.transfer.query import resolve_dates

KINDS = ("transfer", "query")
COLUMNS = {
    "transfer": {"required": ("PatientID", "StudyInstanceUID"), "optional": ("SeriesInstanceUID", "Pseudonym", "ID")},
    "query": {"required": (), "optional": ("ID", "PatientID", "PatientName", "PatientBirthDate", "AccessionNumber",
                                           "StudyDate", "ModalitiesInStudy", "StudyDescription")},
}
MAX_ROWS = 10000
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_TEXT_LIMITS = {"PatientID": 64, "PatientName": 64, "AccessionNumber": 16, "Pseudonym": 64, "ID": 128,
                "StudyDescription": 64, "ModalitiesInStudy": 64}


@dataclass
class Problem:
    line: int
    column: str
    message: str

    def as_dict(self) -> dict:
        return {"line": self.line, "column": self.column, "message": self.message}


@dataclass
class Parsed:
    rows: list[dict] = field(default_factory=list)      # each: {"line": n, column: value...}
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def read_table(data: bytes, file_name: str) -> list[list[str]]:
    """Cells as text, header row first. XLSX by name or signature, else CSV (',' or ';')."""
    if file_name.lower().endswith(".xlsx") or data[:4] == b"PK\x03\x04":
        from openpyxl import load_workbook
        try:
            values = load_workbook(io.BytesIO(data), read_only=True, data_only=True).worksheets[0]
            formulas = load_workbook(io.BytesIO(data), read_only=True, data_only=False).worksheets[0]
        except Exception as exc:  # noqa: BLE001 - any unreadable workbook
            raise ValueError(f"{file_name}: not a readable XLSX workbook ({type(exc).__name__})") from None
        return [[_cell_text(value, formula) for value, formula in zip(row, written, strict=False)]
                for row, written in zip(values.iter_rows(values_only=True), formulas.iter_rows(values_only=True),
                                        strict=False)]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{file_name}: not UTF-8 text (save the CSV as UTF-8)") from None
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = ";" if first.count(";") > first.count(",") else ","
    return [row for row in csv.reader(io.StringIO(text), delimiter=delimiter)]


class UncomputedFormula(str):
    """An empty cell that holds a formula whose value the file does not carry (a workbook written
    by a program, never opened and saved in a spreadsheet): reported, never read as empty."""

    def __new__(cls, formula: str) -> "UncomputedFormula":
        cell = super().__new__(cls, "")
        cell.formula = formula
        return cell


def _cell_text(value: Any, written: Any = None) -> str:
    if value is None and isinstance(written, str) and written.startswith("="):
        return UncomputedFormula(written)
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))                      # 12345 typed in Excel comes back as 12345.0
    if hasattr(value, "strftime"):
        return value.strftime("%Y%m%d")             # a date cell -> DICOM date
    return str(value).strip()


def validate(table: list[list[str]], kind: str) -> Parsed:
    result = Parsed()
    if kind not in KINDS:
        result.problems.append(Problem(0, "", f"unknown batch kind {kind!r}; one of {', '.join(KINDS)}"))
        return result
    if not table or not any(cell.strip() for cell in table[0]):
        result.problems.append(Problem(1, "", "the file is empty: the first line must name the columns"))
        return result
    header = [cell.strip() for cell in table[0]]
    known = COLUMNS[kind]["required"] + COLUMNS[kind]["optional"]
    for _position, name in enumerate(header):
        if name and name not in known:
            result.problems.append(Problem(1, name, f"unknown column; expected {', '.join(known)}"))
    missing = [name for name in COLUMNS[kind]["required"] if name not in header]
    for name in missing:
        result.problems.append(Problem(1, name, "required column missing"))
    if len(table) - 1 > MAX_ROWS:
        result.problems.append(Problem(len(table), "", f"more than {MAX_ROWS} rows; split the file"))
        return result
    for line, cells in enumerate(table[1:], start=2):
        if not any(str(c).strip() for c in cells):
            continue
        row = {"line": line}
        for position, name in enumerate(header):
            if name:
                cell = cells[position] if position < len(cells) else ""
                if isinstance(cell, UncomputedFormula):
                    result.problems.append(Problem(line, name, f"a formula ({cell.formula}) without a saved value: open "
                                                               "the file in a spreadsheet and save it, or paste the values"))
                row[name] = str(cell).strip()
        _check_row(row, kind, result.problems, [n for n in header if n])
        result.rows.append(row)
    if not result.rows and not result.problems:
        result.problems.append(Problem(2, "", "no rows below the header"))
    _check_across_rows(result.rows, kind, result.problems)
    return result


def _check_row(row: dict, kind: str, problems: list[Problem], columns: list[str]) -> None:
    line = row["line"]
    for name in COLUMNS[kind]["required"]:
        if name in columns and not row.get(name):
            problems.append(Problem(line, name, "empty"))
    if kind == "transfer" and "Pseudonym" in columns and not row.get("Pseudonym"):
        problems.append(Problem(line, "Pseudonym", "empty: with a Pseudonym column every row needs one (or drop the "
                                                   "column to use the profile's pseudonyms)"))
    for name, limit in _TEXT_LIMITS.items():
        if len(row.get(name, "")) > limit:
            problems.append(Problem(line, name, f"longer than {limit} characters"))
    for name in ("StudyInstanceUID", "SeriesInstanceUID"):
        if row.get(name) and (not _UID.match(row[name]) or len(row[name]) > 64):
            problems.append(Problem(line, name, "not a UID (digits and dots, at most 64)"))
    for name in ("StudyDate", "PatientBirthDate"):
        if row.get(name):
            try:
                row[name] = resolve_dates(row[name], datetime.date.today())
            except ValueError as exc:
                problems.append(Problem(line, name, str(exc)))
    if kind == "query":
        if not (row.get("PatientID") or row.get("AccessionNumber") or (row.get("PatientName") and row.get("PatientBirthDate"))):
            problems.append(Problem(line, "PatientID", "give PatientID, AccessionNumber, or PatientName with PatientBirthDate"))


def _check_across_rows(rows: list[dict], kind: str, problems: list[Problem]) -> None:
    if kind != "transfer":
        return
    patient_of_study: dict[str, tuple[str, int]] = {}
    pseudonym_of_patient: dict[str, tuple[str, int]] = {}
    for row in rows:
        study, patient, pseudonym = row.get("StudyInstanceUID"), row.get("PatientID"), row.get("Pseudonym")
        if study and patient:
            seen = patient_of_study.setdefault(study, (patient, row["line"]))
            if seen[0] != patient:
                problems.append(Problem(row["line"], "PatientID", f"study already listed for patient {seen[0]!r} "
                                                                  f"on line {seen[1]}: a study belongs to one patient"))
        if patient and pseudonym:
            seen = pseudonym_of_patient.setdefault(patient, (pseudonym, row["line"]))
            if seen[0] != pseudonym:
                problems.append(Problem(row["line"], "Pseudonym", f"patient already has pseudonym {seen[0]!r} on line "
                                                                  f"{seen[1]}: one patient, one pseudonym"))


def to_csv(header: list[str], rows: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[_safe_cell(row.get(name, "")) for name in header] for row in rows])
    return out.getvalue().encode("utf-8")


def to_xlsx(header: list[str], rows: list[dict]) -> bytes:
    from openpyxl import Workbook
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("results")
    sheet.append(header)
    for row in rows:
        sheet.append([_safe_cell(row.get(name, "")) for name in header])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _safe_cell(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula is written as text."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value
