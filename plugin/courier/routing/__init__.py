"""routing: which received instances go where.

Owns: route evaluation (rules, pure), Python condition scripts (scripts), who may send DICOM to
Courier (callers), and the change follower that reads Orthanc's change log and enqueues one
task per (resource, destination) together with the cursor (follower). May import: deid (to
recognise what the ingest gate pseudonymized), store, orthanc_rest, config, errors.
"""
