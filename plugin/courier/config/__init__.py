"""config: what orthanc.json says, read and checked, as frozen records (pure).

Owns: the "Courier" section and Orthanc's node registries -> CourierConfig (parse), one module per
section (routes and the Match language, profiles, nodes, destinations, users, retry, windows,
Modify, DICOM TLS, accepted SOP classes), the runtime configuration document (runtime), the
declared keys (reader.KEYS, each documented in the README), secrets from files or variables.
Every problem is a ConfigError naming the JSON path. May import: errors, pydicom's dictionary.
Nothing here does I/O beyond reading the files orthanc.json names.
"""
