"""deid: pseudonymization by DICOM PS3.15 Annex E.

Owns: the Table E.1-1 data and its compilation per option set (annex_e), keyed pseudonyms, UIDs
and date shifts (keyed), the dataset walk (pseudonymizer, pure), finding and cutting removed
values out of text (text), the new preamble and File Meta Information (file_meta), Courier's
keyed mark on its output (marker), where patient pseudonyms come from (sources: lookup table,
honest broker), which pseudonymizer a task uses (for_tasks), pseudonymization on ingest,
fail-closed (ingest_gate), and pydicom's value checks switched off (pydicom_settings). May import: store, config, errors.
"""
