"""A Modify hook (Courier.Routes[].Modify.Script): what a CTP script or an XNAT router's tag
modification would do, in Python. Called with the pydicom dataset about to be sent (change it in
place) and a context (route, destination, job_id); raise to quarantine the instance instead."""


def modify(ds, context):
    if ds.get("Modality") == "CT" and not ds.get("BodyPartExamined"):
        ds.BodyPartExamined = "UNKNOWN"
    ds.InstitutionalDepartmentName = f"Routed by {context.route}"
