"""The store's schema, as sqlite-utils migrations: each step runs in a transaction and is recorded
in `_sqlite_migrations`. Never edit a step that has shipped; add one.
"""
from __future__ import annotations

import sqlite_utils
from sqlite_utils import Migrations

migrations = Migrations("courier")

SCHEMA_1 = """
    CREATE TABLE tasks (
        id INTEGER PRIMARY KEY,
        route TEXT NOT NULL,
        destination TEXT NOT NULL,
        level TEXT NOT NULL,                 -- Instance | Series | Study
        resource_id TEXT NOT NULL,           -- Orthanc ID
        state TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        finished_at REAL,
        heartbeat_at REAL,
        owner TEXT,
        last_error TEXT,
        delete_after INTEGER NOT NULL DEFAULT 0,
        expected INTEGER,                    -- instances in the manifest
        delivered INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX tasks_due ON tasks (state, priority DESC, next_attempt_at, id);
    CREATE INDEX tasks_resource ON tasks (resource_id);
    CREATE INDEX tasks_destination ON tasks (destination, state);
    CREATE TABLE task_instances (
        task_id INTEGER NOT NULL REFERENCES tasks(id),
        instance_id TEXT NOT NULL,           -- Orthanc ID
        sop_instance_uid TEXT NOT NULL,
        size INTEGER NOT NULL DEFAULT 0,
        delivered INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (task_id, instance_id)
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        actor TEXT NOT NULL,                 -- 'courier', a calling AE, or a user
        action TEXT NOT NULL,
        route TEXT,
        destination TEXT,
        resource_id TEXT,
        task_id INTEGER,
        detail TEXT
    );
    CREATE INDEX audit_action ON audit (action, at);
    CREATE TABLE cursors (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    CREATE TABLE destination_stats (
        destination TEXT PRIMARY KEY,
        delivered_instances INTEGER NOT NULL DEFAULT 0,
        failed_instances INTEGER NOT NULL DEFAULT 0,
        delivered_bytes INTEGER NOT NULL DEFAULT 0
    )
"""


@migrations()
def m001_tasks_manifests_audit_cursor(db: sqlite_utils.Database) -> None:
    for statement in filter(str.strip, SCHEMA_1.split(";")):
        db.execute(statement)


@migrations()
def m002_pseudonymization(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE tasks ADD COLUMN profile TEXT")
    db.execute("CREATE TABLE crosswalk_patients (profile TEXT NOT NULL, original TEXT NOT NULL,"
               " pseudonym TEXT NOT NULL, first_seen REAL NOT NULL, PRIMARY KEY (profile, original))")
    db.execute("CREATE TABLE crosswalk_uids (profile TEXT NOT NULL, original TEXT NOT NULL, new TEXT NOT NULL,"
               " PRIMARY KEY (profile, original))")
    db.execute("CREATE TABLE quarantine (id INTEGER PRIMARY KEY, at REAL NOT NULL, profile TEXT, route TEXT,"
               " task_id INTEGER, instance_id TEXT, sop_instance_uid TEXT, reason TEXT NOT NULL,"
               " disposition TEXT NOT NULL, file TEXT)")


@migrations()
def m003_lookup_tables(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE lookup_patients (profile TEXT NOT NULL, original TEXT NOT NULL, pseudonym TEXT NOT NULL,"
               " PRIMARY KEY (profile, original))")


@migrations()
def m004_node_status(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE node_status (node TEXT PRIMARY KEY, at REAL NOT NULL, ok INTEGER NOT NULL, message TEXT)")


@migrations()
def m005_jobs(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, created_at REAL NOT NULL, created_by TEXT NOT NULL,"
               " source TEXT NOT NULL, destination TEXT NOT NULL, profile TEXT, urgent INTEGER NOT NULL DEFAULT 0,"
               " paused INTEGER NOT NULL DEFAULT 0, canceled INTEGER NOT NULL DEFAULT 0)")
    db.execute("ALTER TABLE tasks ADD COLUMN job_id INTEGER REFERENCES jobs(id)")
    db.execute("ALTER TABLE tasks ADD COLUMN source TEXT")
    db.execute("ALTER TABLE tasks ADD COLUMN study_uid TEXT")
    db.execute("CREATE INDEX tasks_job ON tasks (job_id, state)")


@migrations()
def m006_archive_password(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE jobs ADD COLUMN archive_password TEXT")   # never returned by the API


@migrations()
def m007_batches(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE batches (id INTEGER PRIMARY KEY, created_at REAL NOT NULL, created_by TEXT NOT NULL,"
               " kind TEXT NOT NULL, source TEXT NOT NULL, file_name TEXT, job_id INTEGER REFERENCES jobs(id),"
               " rows TEXT NOT NULL, results TEXT)")
    db.execute("CREATE TABLE job_pseudonyms (job_id INTEGER NOT NULL REFERENCES jobs(id), patient_id TEXT NOT NULL,"
               " pseudonym TEXT NOT NULL, PRIMARY KEY (job_id, patient_id))")


@migrations()
def m008_series_level_jobs(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE tasks ADD COLUMN series_uid TEXT")
    db.execute("ALTER TABLE tasks ADD COLUMN study_id TEXT")      # Orthanc ID of the study a job task fetches into


@migrations()
def m009_job_trial(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE jobs ADD COLUMN trial TEXT")         # JSON: clinical trial attributes of the job


@migrations()
def m010_reviewed_release(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE tasks ADD COLUMN reviewed INTEGER NOT NULL DEFAULT 0")   # burned-in check waived


@migrations()
def m011_worker_slots_and_phases(db: sqlite_utils.Database) -> None:
    # A worker busy with a destination holds a slot until its send returns, even when the task it
    # sends was cancelled meanwhile: MaxWorkersPerDestination counts these, not RUNNING tasks.
    db.execute("CREATE TABLE worker_slots (owner TEXT PRIMARY KEY, destination TEXT NOT NULL, since REAL NOT NULL,"
               " heartbeat_at REAL NOT NULL)")
    # A job task fetches (counted against its source's MaxParallelTasks), then sends: once its
    # study is fetched the source is free for the next study while this one is delivered.
    db.execute("ALTER TABLE tasks ADD COLUMN phase TEXT")


@migrations()
def m012_courier_owned_stability(db: sqlite_utils.Database) -> None:
    # Orthanc's stable events live in its process memory: Courier records every arrival, with the
    # change cursor, and completes series and studies itself (courier.routing.completer).
    db.execute("CREATE TABLE arrivals (instance_id TEXT PRIMARY KEY, series_id TEXT NOT NULL, study_id TEXT NOT NULL,"
               " sop_instance_uid TEXT NOT NULL, size INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL, at REAL NOT NULL)")
    db.execute("CREATE INDEX arrivals_series ON arrivals (series_id, seq)")
    db.execute("CREATE INDEX arrivals_study ON arrivals (study_id, seq)")
    db.execute("CREATE TABLE arrival_resources (level TEXT NOT NULL, resource_id TEXT NOT NULL, study_id TEXT NOT NULL,"
               " modality TEXT, description TEXT, first_at REAL NOT NULL, last_at REAL NOT NULL,"
               " instances INTEGER NOT NULL, last_seq INTEGER NOT NULL, forced_at REAL,"
               " PRIMARY KEY (level, resource_id))")
    db.execute("CREATE INDEX arrival_resources_study ON arrival_resources (study_id)")
    db.execute("CREATE TABLE completions (route TEXT NOT NULL, resource_id TEXT NOT NULL, level TEXT NOT NULL,"
               " routed_seq INTEGER NOT NULL, completed_at REAL NOT NULL, times INTEGER NOT NULL DEFAULT 1,"
               " PRIMARY KEY (route, resource_id))")


@migrations()
def m013_task_patient_id(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE tasks ADD COLUMN patient_id TEXT")      # a job task's PatientID, for Patient Root retrieves


@migrations()
def m014_routers(db: sqlite_utils.Database) -> None:
    # Every router that shares this database: a second live router with the same name refuses to
    # start; the tasks of one whose heartbeat stopped are taken over by the others.
    db.execute("CREATE TABLE routers (name TEXT PRIMARY KEY, incarnation TEXT NOT NULL, started_at REAL NOT NULL,"
               " heartbeat_at REAL NOT NULL)")


SUBSCRIPTIONS = """
    CREATE TABLE subscriptions (
        id INTEGER PRIMARY KEY, created_at REAL NOT NULL, created_by TEXT NOT NULL, name TEXT,
        job_id INTEGER NOT NULL REFERENCES jobs(id), spec TEXT NOT NULL,
        start_day TEXT NOT NULL, past_end TEXT, backfill_next TEXT, backfill_at REAL, since TEXT NOT NULL,
        next_run_at REAL, paused INTEGER NOT NULL DEFAULT 0, lease_owner TEXT, lease_until REAL,
        last_run_at REAL, last_error TEXT, runs INTEGER NOT NULL DEFAULT 0, last_run TEXT);
    CREATE TABLE subscription_studies (
        subscription_id INTEGER NOT NULL REFERENCES subscriptions(id), study_uid TEXT NOT NULL, patient_id TEXT,
        study_date TEXT, instances INTEGER NOT NULL, task_id INTEGER, first_at REAL NOT NULL, at REAL NOT NULL,
        times INTEGER NOT NULL DEFAULT 1, PRIMARY KEY (subscription_id, study_uid));
    ALTER TABLE jobs ADD COLUMN subscription_id INTEGER;
    ALTER TABLE jobs ADD COLUMN pause_seconds REAL NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN phase TEXT;
    ALTER TABLE jobs ADD COLUMN start_when_ready INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN checked_at REAL;
    ALTER TABLE jobs ADD COLUMN check_error TEXT;
    ALTER TABLE tasks ADD COLUMN availability TEXT;
    ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
    ALTER TABLE jobs ADD COLUMN lease_until REAL;
    CREATE TABLE job_items (
        job_id INTEGER NOT NULL REFERENCES jobs(id), idx INTEGER NOT NULL, item TEXT NOT NULL,
        resolved INTEGER NOT NULL DEFAULT 0, targets INTEGER NOT NULL DEFAULT 0, error TEXT,
        PRIMARY KEY (job_id, idx));
    CREATE INDEX tasks_job_study ON tasks (job_id, study_uid)
"""


@migrations()
def m015_subscriptions_and_job_lifecycle(db: sqlite_utils.Database) -> None:
    # Subscriptions: a source queried on a schedule, each study transferred once (subscription_studies)
    # through the subscription's own job; jobs resolved in the background (phase QUERYING, READY).
    for statement in filter(str.strip, SUBSCRIPTIONS.split(";")):
        db.execute(statement)


IMPORTS = """
    CREATE TABLE import_files (
        id INTEGER PRIMARY KEY, source TEXT NOT NULL, path TEXT NOT NULL, unit TEXT NOT NULL, size INTEGER NOT NULL,
        mtime REAL NOT NULL, state TEXT NOT NULL, outcome TEXT, reason TEXT, instance_id TEXT, study_id TEXT,
        series_id TEXT, at REAL NOT NULL, UNIQUE (source, path));
    CREATE INDEX import_files_instance ON import_files (instance_id);
    CREATE INDEX import_files_unit ON import_files (source, unit, state);
    CREATE TABLE uploads (
        id INTEGER PRIMARY KEY, created_at REAL NOT NULL, created_by TEXT NOT NULL, state TEXT NOT NULL,
        action TEXT, at REAL NOT NULL)
"""


@migrations()
def m016_imports(db: sqlite_utils.Database) -> None:
    # Files from watched folders and uploads, one row each (imported, duplicate, rejected with the
    # reason), and the instances they became, which the routes leave to the import.
    for statement in filter(str.strip, IMPORTS.split(";")):
        db.execute(statement)


@migrations()
def m017_hourly_statistics(db: sqlite_utils.Database) -> None:
    # The dashboard's time series: instances received (counted with the change cursor, exactly
    # once across routers), and delivered, failed, bytes and latency percentiles rolled up from the
    # tasks of each finished hour; pruned after 31 days.
    db.execute("CREATE TABLE stats_hourly (hour INTEGER NOT NULL, name TEXT NOT NULL, value REAL NOT NULL,"
               " PRIMARY KEY (hour, name))")
    db.execute("CREATE INDEX tasks_finished ON tasks (finished_at)")     # the rollup and the dashboard read by it


TRAFFIC = """
    CREATE TABLE traffic (
        id INTEGER PRIMARY KEY, first_at REAL NOT NULL, last_at REAL NOT NULL, service TEXT NOT NULL,
        calling_aet TEXT NOT NULL, called_aet TEXT NOT NULL DEFAULT '', remote_ip TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL, operations INTEGER NOT NULL DEFAULT 1, instances INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0, detail TEXT NOT NULL DEFAULT '');
    CREATE INDEX traffic_last ON traffic (last_at);
    CREATE INDEX traffic_caller ON traffic (calling_aet, service, last_at)
"""


@migrations()
def m018_traffic_log(db: sqlite_utils.Database) -> None:
    # The DICOM traffic log: one row per burst of operations of one caller (C-STOREs received or
    # refused, C-FINDs served), with counts and bytes; no patient identifiers. Pruned by RetentionDays.
    for statement in filter(str.strip, TRAFFIC.split(";")):
        db.execute(statement)


@migrations()
def m019_config_versions(db: sqlite_utils.Database) -> None:
    # The runtime configuration (config.runtime): every change a numbered version with who, when
    # and why; the latest is the one applied. config_seeds: per router, the digest of its
    # orthanc.json's runtime part when last read, so that an edit of a router's file becomes a
    # version at its next start (and routers with different files do not undo each other).
    db.execute("CREATE TABLE config_versions (version INTEGER PRIMARY KEY, created_at REAL NOT NULL,"
               " actor TEXT NOT NULL, source TEXT NOT NULL, comment TEXT NOT NULL DEFAULT '',"
               " digest TEXT NOT NULL, document TEXT NOT NULL)")
    db.execute("CREATE TABLE config_seeds (router TEXT PRIMARY KEY, digest TEXT NOT NULL, at REAL NOT NULL)")


@migrations()
def m020_job_modify(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE jobs ADD COLUMN modify TEXT")     # a job's Modify (config.modify), as JSON


@migrations()
def m021_fetched_job_tasks(db: sqlite_utils.Database) -> None:
    # a job task fetched and waiting for its destination (PENDING, phase 'send'), and a cancelled
    # one whose fetched copy is still to be deleted (CANCELED, phase 'send'): found without a scan
    db.execute("CREATE INDEX tasks_phase ON tasks (phase, state, destination)")
    # a phase was only ever meaningful on RUNNING tasks before: a cancelled one left in 'send' is
    # not a fetched copy waiting to be deleted
    db.execute("UPDATE tasks SET phase = NULL WHERE state <> 'RUNNING'")


@migrations()
def m022_next_due(db: sqlite_utils.Database) -> None:
    # when the next retry falls due (each idle worker asks once a second), and whether anything is
    # due at all (each claim asks first): a seek, not a scan of every PENDING task (12 ms each with
    # a backlog of 100,000, a destination down for hours). Partial, for the queries that name
    # 'PENDING' as a literal only: the claim's own query (state = ?) keeps its plan on tasks_due
    # (with a plain index on (state, next_attempt_at) SQLite took that one, and sorted every due task)
    db.execute("CREATE INDEX tasks_next_due ON tasks (next_attempt_at) WHERE state = 'PENDING'")


@migrations()
def m023_pending_by_destination(db: sqlite_utils.Database) -> None:
    # a claim while some destinations are at their MaxWorkersPerDestination: the most urgent due
    # task of each other destination, and the most urgent job task of each busy one (a fetch needs
    # no slot), each a seek (Tasks._head_by_destination)
    db.execute("CREATE INDEX tasks_pending_by_destination ON tasks (destination, priority DESC, next_attempt_at, id)"
               " WHERE state = 'PENDING'")
    db.execute("CREATE INDEX tasks_pending_jobs ON tasks (destination, priority DESC, next_attempt_at, id)"
               " WHERE state = 'PENDING' AND source IS NOT NULL")
