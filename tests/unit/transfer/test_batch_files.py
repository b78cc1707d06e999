import io

from openpyxl import Workbook, load_workbook

from courier.transfer.batch_files import read_table, to_csv, to_xlsx, validate

UID1, UID2 = "1.2.840.1", "1.2.840.2"


def problems(text, kind="transfer", name="f.csv"):
    parsed = validate(read_table(text.encode("utf-8") if isinstance(text, str) else text, name), kind)
    return [(p.line, p.column, p.message) for p in parsed.problems], parsed


def test_a_valid_transfer_file_with_bom_and_semicolons():
    found, parsed = problems(f"\ufeffPatientID;StudyInstanceUID;Pseudonym;ID\nP1;{UID1};S1;row-a\n\nP2;{UID2};S2;row-b\n")
    assert found == [] and [(r["line"], r["PatientID"], r["ID"]) for r in parsed.rows] == [(2, "P1", "row-a"), (4, "P2", "row-b")]


def test_every_error_is_reported_with_line_and_column():
    found, _ = problems(f"PatientID,StudyInstanceUID,Pseudonym\n,{UID1},S1\nP2,not-a-uid,S2\nP3,{UID1},S3\nP3,{UID2},S4\n")
    assert found == [
        (2, "PatientID", "empty"),
        (3, "StudyInstanceUID", "not a UID (digits and dots, at most 64)"),
        (5, "Pseudonym", "patient already has pseudonym 'S3' on line 4: one patient, one pseudonym"),
    ]


def test_one_study_one_patient():
    found, _ = problems(f"PatientID,StudyInstanceUID\nP1,{UID1}\nP2,{UID1}\n")
    assert found == [(3, "PatientID", "study already listed for patient 'P1' on line 2: a study belongs to one patient")]


def test_header_problems():
    assert problems("Patient,StudyInstanceUID\nP1,1.2\n")[0] == [
        (1, "Patient", "unknown column; expected PatientID, StudyInstanceUID, SeriesInstanceUID, Pseudonym, ID"),
        (1, "PatientID", "required column missing")]
    assert problems("")[0] == [(1, "", "the file is empty: the first line must name the columns")]


def test_query_rows_need_an_identifier_and_valid_dates():
    found, parsed = problems("ID,PatientName,PatientBirthDate,StudyDate\nq1,Doe^Jane,19700101,20240101-20240131\n"
                             "q2,Roe^Rick,,\nq3,Poe,19800101,2024-01\n", kind="query")
    assert (3, "PatientID", "give PatientID, AccessionNumber, or PatientName with PatientBirthDate") in found
    assert any(line == 4 and column == "StudyDate" for line, column, _ in found)
    assert len(parsed.rows) == 3


def test_query_rows_take_relative_study_dates():
    import datetime

    found, parsed = problems("ID,PatientID,StudyDate\nq1,P1,-7d-TODAY\nq2,P2,-3x\n", kind="query")
    today = datetime.date.today()
    assert parsed.rows[0]["StudyDate"] == f"{today - datetime.timedelta(days=7):%Y%m%d}-{today:%Y%m%d}"
    assert [(line, column) for line, column, _ in found] == [(3, "StudyDate")]


def test_xlsx_numbers_and_dates_are_read_as_dicom_text():
    import datetime
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["PatientID", "PatientBirthDate", "ID"])
    sheet.append([12345, datetime.date(1970, 1, 2), "x"])
    out = io.BytesIO()
    workbook.save(out)
    found, parsed = problems(out.getvalue(), kind="query", name="list.xlsx")
    assert found == [] and parsed.rows == [{"line": 2, "PatientID": "12345", "PatientBirthDate": "19700102", "ID": "x"}]


def test_not_a_workbook_or_not_utf8_is_a_clear_error():
    import pytest
    with pytest.raises(ValueError, match="not a readable XLSX workbook"):
        read_table(b"PK\x03\x04garbage", "list.xlsx")
    with pytest.raises(ValueError, match="not UTF-8"):
        read_table("PatientID\n\xe9".encode("latin-1"), "list.csv")


def test_exports_escape_formulas():
    rows = [{"A": "=HYPERLINK(\"x\")", "B": 2}]
    import csv
    assert list(csv.reader(io.StringIO(to_csv(["A", "B"], rows).decode())))[1] == ["'=HYPERLINK(\"x\")", "2"]
    sheet = load_workbook(io.BytesIO(to_xlsx(["A", "B"], rows))).active
    assert sheet["A2"].value == "'=HYPERLINK(\"x\")" and sheet["B2"].value == 2


def test_a_missing_column_does_not_hide_the_other_problems_of_the_file():
    found, _ = problems("StudyInstanceUID,ID\nnot-a-uid,a\n1.2.3,\n")
    assert found == [(1, "PatientID", "required column missing"),
                     (2, "StudyInstanceUID", "not a UID (digits and dots, at most 64)")]


def test_an_empty_pseudonym_cell_is_an_error_not_a_quarantine_later():
    found, _ = problems(f"PatientID,StudyInstanceUID,Pseudonym\nP1,{UID1},S1\nP2,{UID2},\n")
    assert found == [(3, "Pseudonym", "empty: with a Pseudonym column every row needs one (or drop the column to use "
                                      "the profile's pseudonyms)")]


def test_an_xlsx_formula_without_a_saved_value_is_reported_not_read_as_empty():
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["PatientID", "StudyInstanceUID"])
    sheet.append(["P1", UID1])
    sheet.append(["=A2", UID2])                      # openpyxl writes no cached value, as scripts do
    out = io.BytesIO()
    workbook.save(out)
    found, _ = problems(out.getvalue(), name="list.xlsx")
    assert (3, "PatientID", "a formula (=A2) without a saved value: open the file in a spreadsheet and save it, or "
                            "paste the values") in found
