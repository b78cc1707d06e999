"""transfer: bringing studies from other nodes (ADIT-style jobs).

Owns: query filters and the local re-filter (query, pure), C-ECHO / C-FIND / QIDO and
associations (remote), C-MOVE / C-GET / WADO-RS into Courier's Orthanc and the count of what
arrived (fetch), the fetch step of a job task (retrieve), job requests, item resolution and
derived status (jobs), batch files (batch_files, pure; batches). May import: deid, store,
orthanc_rest, config, errors.
"""
