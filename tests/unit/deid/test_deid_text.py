"""Cleaning text (PS3.15 E.3.5): every value this instance's pseudonymization removes or replaces,
at any depth, is cut out of the text it keeps, by whole words, in the spellings people write."""
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from courier.config.profiles import Profile
from courier.deid import text as text_module
from courier.deid.pseudonymizer import Pseudonymizer
from courier.deid.text import Identifiers
from factory import make_instance

SECRET = b"test-secret-not-for-production"


def clean(*options, **tags):
    """ImageComments (cleaned with CleanDescriptors) and Manufacturer (not in Table E.1-1: kept and
    cleaned) of an instance with `tags`, once pseudonymized."""
    comment = tags.pop("comment")
    ds = make_instance(ImageComments=comment, Manufacturer=comment, **tags)
    out = Pseudonymizer(Profile("p", SECRET, frozenset({"CleanDescriptors", *options}), burned_in="Pass")).pseudonymize(ds)
    assert out.dataset.ImageComments == out.dataset.Manufacturer
    return out.dataset.ImageComments


def cleaner(**values):
    found = Identifiers()
    for (tag, vr), value in values.values():
        found.add(tag, vr, value)
    return found.cleaner()


def test_identifiers_are_cut_as_whole_words_never_inside_a_word():
    text = clean(ReferringPhysicianName="Ref^Doc", comment="Patient prefers the docs; Ref DOC called, Doc-Ref again")
    assert text == "Patient prefers the docs; XXX XXX called, XXX-XXX again"


def test_name_parts_are_found_in_any_order_and_case():
    text = clean(patient_name="Smithfield^Johanna^Maria", comment="JOHANNA SMITHFIELD; Smithfield, Johanna M.; Dr. maria")
    assert text == "XXX XXX; XXX, XXX M.; Dr. XXX"
    assert clean(patient_name="Li^Wu", comment="Mr Li, Wu. Liver.") == "Mr XX, XX. Liver."     # never longer than cut


@pytest.mark.parametrize("spelling", ["19701231", "1970-12-31", "1970/12/31", "1970.12.31", "31.12.1970", "31/12/1970",
                                      "12/31/1970", "12-31-1970", "31 Dec 1970", "31 December 1970", "December 31, 1970",
                                      "Dec. 31, 1970", "31-DEC-1970"])
def test_dates_are_cut_in_their_usual_spellings(spelling):
    assert clean(PatientBirthDate="19701231", comment=f"born {spelling}, seen") == "born XXX, seen"


def test_a_date_is_not_cut_out_of_a_longer_number_or_uid():
    kept = "since 1970; on 12/31; ref 1.2.19701231.5; code 197012311"
    assert clean(PatientBirthDate="19701231", comment=kept) == kept
    assert clean(PatientBirthDate="19700101", comment="1.1.1970 and 1/1/1970 and 01.01.1970") == "XXX and XXX and XXX"


def test_the_standards_example_of_age_sex_and_physician():
    """E.3.5 Note: "Chest X-Ray 55F Dr. Smith" loses the age and sex (55F) and the physician."""
    ds = make_instance(StudyDescription="Chest X-Ray 55F Dr. Smith", PatientAge="055Y", PatientSex="F",
                       ReferringPhysicianName="Smith^John")
    out = Pseudonymizer(Profile("p", SECRET, frozenset({"CleanDescriptors"}), burned_in="Pass")).pseudonymize(ds).dataset
    assert out.StudyDescription == "Chest X-Ray XXX Dr. XXX"


@pytest.mark.parametrize("said", ["55F", "55 F", "55yo", "55 y/o", "55-year-old", "55 year old female", "55 yrs", "55yoF"])
def test_an_age_is_cut_with_its_unit_or_sex(said):
    assert clean(PatientAge="055Y", PatientSex="F", comment=f"a {said} patient") == "a XXX patient"
    kept = "55 mm lesion, 3 F catheter"
    assert clean(PatientAge="055Y", PatientSex="F", comment=kept) == kept     # a bare number is no age


def test_every_identifier_of_the_patient_is_cut():
    other = Dataset()
    other.PatientID, other.IssuerOfPatientID, other.TypeOfPatientID = "OTHER-77", "St Elsewhere Clinic", "TEXT"
    text = clean(OtherPatientIDsSequence=Sequence([other]), OtherPatientNames=["Mill^Anna", "Roe^Ann"],
                 PatientMotherBirthName="Kowalska^Rosalind", PatientBirthName="Brown^Jane", MilitaryRank="Lieutenant",
                 BranchOfService="Navy", MedicalRecordLocator="MRL-5521", PatientAddress="12 Elm Street^Springfield",
                 PatientTelephoneNumbers="555-0199", IssuerOfPatientID="City Hospital", patient_id="MRN0042",
                 comment="IDs OTHER-77 (St Elsewhere Clinic), MRN0042, MRL-5521; aka Anna Mill, Ann Roe, Jane Brown; "
                         "mother Rosalind Kowalska; Lieutenant, navy; 12 Elm Street, Springfield; tel 555-0199")
    assert text == "IDs XXX (XXX), XXX, XXX; aka XXX XXX, XXX XXX, XXX XXX; mother XXX XXX; XXX, XXX; XXX; tel XXX"


def test_what_the_profile_removes_is_cut_from_the_text_it_keeps():
    request = Dataset()
    request.ScheduledPerformingPhysicianName = "Gray^Meredith"          # removed with its sequence, one level down
    request.RequestedProcedureID = "RP-4711"
    text = clean(OperatorsName="Tech^Bob", PerformingPhysicianName="Perf^Alice", InstitutionName="General Hospital",
                 InstitutionalDepartmentName="Radiology West", StationName="CTSTATION7", DeviceSerialNumber="SN-99812",
                 NameOfPhysiciansReadingStudy="House^Gregory", RequestAttributesSequence=Sequence([request]),
                 comment="by Bob (operator) for Dr Alice Perf at general hospital, Radiology West, on CTSTATION7 "
                         "(SN-99812); read by Gregory House; requested by Meredith Gray, RP-4711")
    assert text == ("by XXX (operator) for Dr XXX XXX at XXX, XXX, on XXX (XXX); read by XXX XXX; "
                    "requested by XXX XXX, XXX")


def test_what_an_option_keeps_is_not_cut():
    text = clean("RetainDeviceIdentity", StationName="CTSTATION7", DeviceSerialNumber="SN-99812",
                 comment="on CTSTATION7 (SN-99812)")
    assert text == "on CTSTATION7 (SN-99812)"


def test_shifted_dates_are_cut_from_text_too():
    text = clean("RetainLongitudinalModifiedDates", StudyDate="20240115", comment="scanned 15.01.2024")
    assert text == "scanned XXX"


def test_the_matcher_is_built_once_per_instance(monkeypatch):
    built = []
    original = text_module.TextCleaner.__init__

    def counting(self, terms):
        built.append(1)
        original(self, terms)
    monkeypatch.setattr(text_module.TextCleaner, "__init__", counting)
    item = Dataset()
    item.CodeMeaning = "Doe"
    ds = make_instance(ImageComments="Jane Doe", StudyDescription="Doe", SeriesDescription="Jane",
                       Manufacturer="Doe Inc", ProtocolName="Jane", AnatomicRegionSequence=Sequence([item] * 20))
    out = Pseudonymizer(Profile("p", SECRET, frozenset({"CleanDescriptors"}), burned_in="Pass")).pseudonymize(ds).dataset
    assert built == [1]
    assert out.Manufacturer == "XXX Inc" and out.AnatomicRegionSequence[19].CodeMeaning == "XXX"


def test_a_cleaned_value_never_grows():
    found = cleaner(name=((0x00100010, "PN"), "Li^Wu"))
    assert found.clean("Li") == "XX" and found.clean("Wu Li") == "XX XX"
    assert found.clean("") == "" and found.clean_value(["Li", "Ok"]) == ["XX", "Ok"]


def test_short_codes_and_numbers_are_no_identifiers():
    found = cleaner(study_id=((0x00200010, "SH"), "1"), station=((0x00081010, "SH"), "CT"),
                    sex=((0x00100040, "CS"), "F"), weight=((0x00101030, "DS"), "70"))
    kept = "CT 1 of 2, F 70 kg"
    assert found.clean(kept) == kept
