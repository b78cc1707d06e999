"""Courier: DICOM routing, pseudonymization and transfer jobs inside Orthanc.

The house, from the top floor down (each package may import only the floors below it; `make test`
checks this with import-linter, see pyproject.toml):

    app        composition root: configuration -> store -> engine, follower, callbacks, REST
    web        the /courier/ REST API (route table, handlers by area), the UI, metrics
    engine     worker threads: claim tasks, call transfer and delivery, record outcomes
    transfer   query remote nodes, fetch studies (C-MOVE/C-GET/WADO), jobs, batch files
    delivery   senders per destination kind, the deliver step, folder layouts
    routing    rules, condition scripts, callers, the change follower
    deid       Annex E pseudonymization, pseudonym sources, the ingest gate
    store      every SQL statement: tasks, jobs, audit, crosswalk, quarantine (SQLite)
    orthanc_rest, host   the two doors to Orthanc: loopback HTTP for threads; the in-process
               API (host is the only module that is handed the `orthanc` module)
    config     orthanc.json's "Courier" section -> frozen records; errors name the JSON path
    errors     the error tree: which errors are retriable is decided there
"""

VERSION = "0.1.0"
