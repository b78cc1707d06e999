"""store: everything Courier must not forget, in one database.

Owns every SQL statement: the schema and its migrations (schema), the back-end (database:
SQLite), one module per table family (tasks, jobs, audit, crosswalk, quarantine, nodes, traffic,
config_versions), the
records they read and write (records: task states, Task, Claim, Job, ...) and the Store that
holds them all (store). May import: config, errors.
"""
