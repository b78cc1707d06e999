"""Modify (pure): Copy, Replace, Set, Remove at the top level and inside sequences, the hook, and
the errors: a bad spec names its JSON path; a failing hook raises ModifyError."""
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from courier.config.modify import parse_modify
from courier.delivery.modify import Modifier, ModifyContext, ModifyError
from courier.errors import ConfigError
from factory import make_instance

CONTEXT = ModifyContext("r", "d")


def instance():
    ds = make_instance(AccessionNumber="ACC9", OperatorsName="Op^One", InstitutionName="General")
    items = []
    for n in range(2):
        item = Dataset()
        item.RequestedProcedureID, item.ScheduledProcedureStepID = f"RP{n}", f"SPS{n}"
        items.append(item)
    ds.RequestAttributesSequence = Sequence(items)
    ds.add_new(0x00091001, "LO", "private")
    return ds


def test_copy_replace_set_remove_top_level_and_in_sequences():
    modification = parse_modify({
        "Copy": {"AccessionNumber": "StudyID"},
        "Replace": {"StudyDescription": {"Pattern": "^Test ", "With": "Research "},
                    "RequestAttributesSequence[*].RequestedProcedureID": {"Pattern": "RP", "With": "X"}},
        "Set": {"InstitutionName": "Research site", "RequestAttributesSequence[1].ScheduledProcedureStepID": "S-1",
                "ImageType": ["DERIVED", "SECONDARY"]},
        "Remove": ["OperatorsName", "00091001", "RequestAttributesSequence[0].ScheduledProcedureStepID"]},
        "Courier.Routes[0].Modify")
    ds = instance()
    Modifier(modification).apply(ds, CONTEXT)
    assert ds.StudyID == "ACC9" and ds.StudyDescription == "Research study"
    assert [i.RequestedProcedureID for i in ds.RequestAttributesSequence] == ["X0", "X1"]
    assert ds.InstitutionName == "Research site" and list(ds.ImageType) == ["DERIVED", "SECONDARY"]
    assert "OperatorsName" not in ds and 0x00091001 not in ds
    assert "ScheduledProcedureStepID" not in ds.RequestAttributesSequence[0]
    assert ds.RequestAttributesSequence[1].ScheduledProcedureStepID == "S-1"


def test_a_whole_item_or_sequence_can_go_and_missing_ones_are_left_alone():
    ds = instance()
    Modifier(parse_modify({"Remove": ["RequestAttributesSequence[0]", "ReferencedStudySequence[*].ReferencedSOPClassUID"]},
                          "M")).apply(ds, CONTEXT)
    assert [i.RequestedProcedureID for i in ds.RequestAttributesSequence] == ["RP1"]
    Modifier(parse_modify({"Remove": ["RequestAttributesSequence[*]"]}, "M")).apply(ds, CONTEXT)
    assert "RequestAttributesSequence" not in ds


def test_the_hook_runs_last_and_its_error_is_a_modify_error():
    seen = []

    def hook(ds, context):
        seen.append((ds.InstitutionName, context.route))
        ds.PatientComments = "hooked"
    ds = instance()
    Modifier(parse_modify({"Set": {"InstitutionName": "S"}, "Script": "m.py"}, "M"), hook).apply(ds, CONTEXT)
    assert seen == [("S", "r")] and ds.PatientComments == "hooked"

    def broken(ds, context):
        raise KeyError("no such thing")
    with pytest.raises(ModifyError, match=r"Modify script m.py failed: KeyError"):
        Modifier(parse_modify({"Script": "m.py"}, "M"), broken).apply(instance(), CONTEXT)


@pytest.mark.parametrize("spec, message", [
    ({"Set": {"NoSuchKeyword": "x"}}, r"M.Set.NoSuchKeyword: 'NoSuchKeyword' is not a DICOM keyword"),
    ({"Set": {"RequestAttributesSequence": "x"}}, r"M.Set.RequestAttributesSequence: Set takes a value"),
    ({"Set": {"PatientName.Foo": "x"}}, r"'PatientName' must be a sequence with an item"),
    ({"Set": {"PixelData": "x"}}, r"PixelData cannot be changed by Modify"),
    ({"Set": {"InstitutionName": {"a": 1}}}, r"M.Set.InstitutionName: expected a string, a number or a list"),
    ({"Replace": {"StudyDescription": {"Pattern": "("}}}, r"M.Replace.StudyDescription.Pattern: not a regular expression"),
    ({"Remove": ["00091001.X"]}, r"M.Remove\[0\]: 00091001: a tag in hex may end a path of Remove only"),
    ({"Script": "../x.py"}, r"M.Script: expected a file name"),
    ({"Rename": {}}, r"M.Rename: unknown key"),
])
def test_a_bad_modify_names_its_json_path(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_modify(spec, "M")


def test_person_names_stay_names_and_values_are_checked_against_their_vr():
    ds = instance()
    Modifier(parse_modify({"Replace": {"PatientName": {"Pattern": "Doe", "With": "Roe"}},
                           "Copy": {"PatientName": "OtherPatientNames"}}, "M")).apply(ds, CONTEXT)
    assert str(ds.PatientName) == "Roe^Jane" and str(ds.OtherPatientNames) == "Doe^Jane"
    assert parse_modify({"Set": {"StudyID": 5, "SliceThickness": 1.5}}, "M").set[0][1] == "5"
    for spec, message in [({"Set": {"Rows": "256"}}, r"M.Set.Rows: does not fit Rows \(US\)"),
                          ({"Set": {"StudyID": "x" * 17}}, r"M.Set.StudyID: does not fit StudyID \(SH\)"),
                          ({"Replace": {"Rows": {"Pattern": "1"}}}, r"M.Replace.Rows: Replace works on text, and Rows is US"),
                          ({"Copy": {"Rows": "StudyID"}}, r"Rows \(US\) cannot be copied into StudyID \(SH\)"),
                          ({"Set": {"SOPInstanceUID": "1.2.3"}}, r"SOPInstanceUID cannot be changed by Modify"),
                          ({"Remove": ["StudyInstanceUID"]}, r"StudyInstanceUID cannot be changed by Modify"),
                          ({"Replace": {"StudyDescription": {"Pattern": "(a)", "With": "\\2"}}},
                           r"M.Replace.StudyDescription.With: refers to group 2, and the pattern has 1")]:
        with pytest.raises(ConfigError, match=message):
            parse_modify(spec, "M")


def test_a_hook_may_not_change_the_identifying_uids_and_its_reason_quotes_no_value():
    def renames(ds, context):
        ds.SOPInstanceUID = "1.2.3.4"
    with pytest.raises(ModifyError, match=r"changed SOPInstanceUID, which only pseudonymization may remap"):
        Modifier(parse_modify({"Script": "m.py"}, "M"), renames).apply(instance(), CONTEXT)

    def tells(ds, context):
        raise ValueError(f"no rule for {ds.PatientName}")
    with pytest.raises(ModifyError) as raised:
        Modifier(parse_modify({"Script": "m.py"}, "M"), tells).apply(instance(), CONTEXT)
    assert "Doe" not in str(raised.value) and "ValueError" in str(raised.value)
