"""delivery: getting instances to destinations, counted per SOP Instance UID.

Owns: what a sender is (sender), one sender per destination kind (orthanc_senders: DICOM,
DICOMweb, peers; folder; archive; bucket: S3 with boto3; NIfTI by dcm2niix), building them (senders), a routed task's
manifest (manifest), the deliver step with Modify and pseudonymization on the way and quarantine
(deliver), a Modify applied to a dataset (modify, pure), and folder layouts kept inside their
folder (layout, pure). May import: deid, store, orthanc_rest,
config, errors.
"""
