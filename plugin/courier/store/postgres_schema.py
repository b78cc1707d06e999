"""The PostgreSQL schema, as recorded steps (courier_migrations): the same tables as the SQLite
steps in courier.store.schema, with PostgreSQL types. Never edit a step that has shipped; add
one here and one there."""
from __future__ import annotations

P001_SCHEMA = """
    CREATE TABLE jobs (
        id BIGSERIAL PRIMARY KEY, created_at DOUBLE PRECISION NOT NULL, created_by TEXT NOT NULL,
        source TEXT NOT NULL, destination TEXT NOT NULL, profile TEXT, urgent INTEGER NOT NULL DEFAULT 0,
        paused INTEGER NOT NULL DEFAULT 0, canceled INTEGER NOT NULL DEFAULT 0, archive_password TEXT, trial TEXT);
    CREATE TABLE tasks (
        id BIGSERIAL PRIMARY KEY, route TEXT NOT NULL, destination TEXT NOT NULL, level TEXT NOT NULL,
        resource_id TEXT NOT NULL, state TEXT NOT NULL, priority INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at DOUBLE PRECISION NOT NULL,
        created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL, finished_at DOUBLE PRECISION,
        heartbeat_at DOUBLE PRECISION, owner TEXT, last_error TEXT, delete_after INTEGER NOT NULL DEFAULT 0,
        expected INTEGER, delivered INTEGER NOT NULL DEFAULT 0, bytes BIGINT NOT NULL DEFAULT 0, profile TEXT,
        job_id BIGINT REFERENCES jobs(id), source TEXT, study_uid TEXT, series_uid TEXT, study_id TEXT,
        reviewed INTEGER NOT NULL DEFAULT 0, phase TEXT, patient_id TEXT);
    CREATE INDEX tasks_due ON tasks (state, priority DESC, next_attempt_at, id);
    CREATE INDEX tasks_resource ON tasks (resource_id);
    CREATE INDEX tasks_destination ON tasks (destination, state);
    CREATE INDEX tasks_job ON tasks (job_id, state);
    CREATE INDEX tasks_owner ON tasks (owner, state);
    CREATE TABLE task_instances (
        rowid BIGSERIAL, task_id BIGINT NOT NULL REFERENCES tasks(id), instance_id TEXT NOT NULL,
        sop_instance_uid TEXT NOT NULL, size BIGINT NOT NULL DEFAULT 0, delivered INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (task_id, instance_id));
    CREATE TABLE audit (
        id BIGSERIAL PRIMARY KEY, at DOUBLE PRECISION NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, route TEXT,
        destination TEXT, resource_id TEXT, task_id BIGINT, detail TEXT);
    CREATE INDEX audit_action ON audit (action, at);
    CREATE TABLE cursors (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
    CREATE TABLE destination_stats (
        destination TEXT PRIMARY KEY, delivered_instances BIGINT NOT NULL DEFAULT 0,
        failed_instances BIGINT NOT NULL DEFAULT 0, delivered_bytes BIGINT NOT NULL DEFAULT 0);
    CREATE TABLE crosswalk_patients (
        profile TEXT NOT NULL, original TEXT NOT NULL, pseudonym TEXT NOT NULL, first_seen DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (profile, original));
    CREATE TABLE crosswalk_uids (
        rowid BIGSERIAL, profile TEXT NOT NULL, original TEXT NOT NULL, new TEXT NOT NULL, PRIMARY KEY (profile, original));
    CREATE TABLE quarantine (
        id BIGSERIAL PRIMARY KEY, at DOUBLE PRECISION NOT NULL, profile TEXT, route TEXT, task_id BIGINT,
        instance_id TEXT, sop_instance_uid TEXT, reason TEXT NOT NULL, disposition TEXT NOT NULL, file TEXT);
    CREATE TABLE lookup_patients (
        profile TEXT NOT NULL, original TEXT NOT NULL, pseudonym TEXT NOT NULL, PRIMARY KEY (profile, original));
    CREATE TABLE node_status (node TEXT PRIMARY KEY, at DOUBLE PRECISION NOT NULL, ok INTEGER NOT NULL, message TEXT);
    CREATE TABLE batches (
        id BIGSERIAL PRIMARY KEY, created_at DOUBLE PRECISION NOT NULL, created_by TEXT NOT NULL, kind TEXT NOT NULL,
        source TEXT NOT NULL, file_name TEXT, job_id BIGINT REFERENCES jobs(id), rows TEXT NOT NULL, results TEXT);
    CREATE TABLE job_pseudonyms (
        job_id BIGINT NOT NULL REFERENCES jobs(id), patient_id TEXT NOT NULL, pseudonym TEXT NOT NULL,
        PRIMARY KEY (job_id, patient_id));
    CREATE TABLE worker_slots (
        owner TEXT PRIMARY KEY, destination TEXT NOT NULL, since DOUBLE PRECISION NOT NULL,
        heartbeat_at DOUBLE PRECISION NOT NULL);
    CREATE TABLE arrivals (
        instance_id TEXT PRIMARY KEY, series_id TEXT NOT NULL, study_id TEXT NOT NULL, sop_instance_uid TEXT NOT NULL,
        size BIGINT NOT NULL DEFAULT 0, seq BIGINT NOT NULL, at DOUBLE PRECISION NOT NULL);
    CREATE INDEX arrivals_series ON arrivals (series_id, seq);
    CREATE INDEX arrivals_study ON arrivals (study_id, seq);
    CREATE TABLE arrival_resources (
        level TEXT NOT NULL, resource_id TEXT NOT NULL, study_id TEXT NOT NULL, modality TEXT, description TEXT,
        first_at DOUBLE PRECISION NOT NULL, last_at DOUBLE PRECISION NOT NULL, instances INTEGER NOT NULL,
        last_seq BIGINT NOT NULL, forced_at DOUBLE PRECISION, PRIMARY KEY (level, resource_id));
    CREATE INDEX arrival_resources_study ON arrival_resources (study_id);
    CREATE TABLE completions (
        route TEXT NOT NULL, resource_id TEXT NOT NULL, level TEXT NOT NULL, routed_seq BIGINT NOT NULL,
        completed_at DOUBLE PRECISION NOT NULL, times INTEGER NOT NULL DEFAULT 1, PRIMARY KEY (route, resource_id));
    CREATE TABLE routers (
        name TEXT PRIMARY KEY, incarnation TEXT NOT NULL, started_at DOUBLE PRECISION NOT NULL,
        heartbeat_at DOUBLE PRECISION NOT NULL)
"""

P002_SUBSCRIPTIONS = """
    CREATE TABLE subscriptions (
        id BIGSERIAL PRIMARY KEY, created_at DOUBLE PRECISION NOT NULL, created_by TEXT NOT NULL, name TEXT,
        job_id BIGINT NOT NULL REFERENCES jobs(id), spec TEXT NOT NULL,
        start_day TEXT NOT NULL, past_end TEXT, backfill_next TEXT, backfill_at DOUBLE PRECISION, since TEXT NOT NULL,
        next_run_at DOUBLE PRECISION, paused INTEGER NOT NULL DEFAULT 0, lease_owner TEXT, lease_until DOUBLE PRECISION,
        last_run_at DOUBLE PRECISION, last_error TEXT, runs INTEGER NOT NULL DEFAULT 0, last_run TEXT);
    CREATE TABLE subscription_studies (
        subscription_id BIGINT NOT NULL REFERENCES subscriptions(id), study_uid TEXT NOT NULL, patient_id TEXT,
        study_date TEXT, instances INTEGER NOT NULL, task_id BIGINT, first_at DOUBLE PRECISION NOT NULL,
        at DOUBLE PRECISION NOT NULL, times INTEGER NOT NULL DEFAULT 1, PRIMARY KEY (subscription_id, study_uid));
    ALTER TABLE jobs ADD COLUMN subscription_id BIGINT;
    ALTER TABLE jobs ADD COLUMN pause_seconds DOUBLE PRECISION NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN phase TEXT;
    ALTER TABLE jobs ADD COLUMN start_when_ready INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN checked_at DOUBLE PRECISION;
    ALTER TABLE jobs ADD COLUMN check_error TEXT;
    ALTER TABLE tasks ADD COLUMN availability TEXT;
    ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
    ALTER TABLE jobs ADD COLUMN lease_until DOUBLE PRECISION;
    CREATE TABLE job_items (
        job_id BIGINT NOT NULL REFERENCES jobs(id), idx INTEGER NOT NULL, item TEXT NOT NULL,
        resolved INTEGER NOT NULL DEFAULT 0, targets INTEGER NOT NULL DEFAULT 0, error TEXT,
        PRIMARY KEY (job_id, idx));
    CREATE INDEX tasks_job_study ON tasks (job_id, study_uid)
"""

P003_IMPORTS = """
    CREATE TABLE import_files (
        id BIGSERIAL PRIMARY KEY, source TEXT NOT NULL, path TEXT NOT NULL, unit TEXT NOT NULL, size BIGINT NOT NULL,
        mtime DOUBLE PRECISION NOT NULL, state TEXT NOT NULL, outcome TEXT, reason TEXT, instance_id TEXT, study_id TEXT,
        series_id TEXT, at DOUBLE PRECISION NOT NULL, UNIQUE (source, path));
    CREATE INDEX import_files_instance ON import_files (instance_id);
    CREATE INDEX import_files_unit ON import_files (source, unit, state);
    CREATE TABLE uploads (
        id BIGSERIAL PRIMARY KEY, created_at DOUBLE PRECISION NOT NULL, created_by TEXT NOT NULL, state TEXT NOT NULL,
        action TEXT, at DOUBLE PRECISION NOT NULL)
"""

P004_HOURLY = """
    CREATE TABLE stats_hourly (hour BIGINT NOT NULL, name TEXT NOT NULL, value DOUBLE PRECISION NOT NULL,
                               PRIMARY KEY (hour, name));
    CREATE INDEX tasks_finished ON tasks (finished_at)
"""

P005_TRAFFIC = """
    CREATE TABLE traffic (
        id BIGSERIAL PRIMARY KEY, first_at DOUBLE PRECISION NOT NULL, last_at DOUBLE PRECISION NOT NULL,
        service TEXT NOT NULL, calling_aet TEXT NOT NULL, called_aet TEXT NOT NULL DEFAULT '',
        remote_ip TEXT NOT NULL DEFAULT '', status TEXT NOT NULL, operations BIGINT NOT NULL DEFAULT 1,
        instances BIGINT NOT NULL DEFAULT 0, bytes BIGINT NOT NULL DEFAULT 0, detail TEXT NOT NULL DEFAULT '');
    CREATE INDEX traffic_last ON traffic (last_at);
    CREATE INDEX traffic_caller ON traffic (calling_aet, service, last_at)
"""

P006_CONFIG_VERSIONS = """
    CREATE TABLE config_versions (
        version BIGINT PRIMARY KEY, created_at DOUBLE PRECISION NOT NULL, actor TEXT NOT NULL, source TEXT NOT NULL,
        comment TEXT NOT NULL DEFAULT '', digest TEXT NOT NULL, document TEXT NOT NULL);
    CREATE TABLE config_seeds (router TEXT PRIMARY KEY, digest TEXT NOT NULL, at DOUBLE PRECISION NOT NULL)
"""

STEPS: list[tuple[str, str]] = [
    ("p001_schema_as_of_sqlite_m014", P001_SCHEMA),
    ("p002_subscriptions_and_job_lifecycle", P002_SUBSCRIPTIONS),
    ("p003_imports", P003_IMPORTS),
    ("p004_hourly_statistics", P004_HOURLY),
    ("p005_traffic_log", P005_TRAFFIC),
    ("p006_config_versions", P006_CONFIG_VERSIONS),
    ("p007_job_modify", "ALTER TABLE jobs ADD COLUMN modify TEXT"),
    ("p008_fetched_job_tasks", "CREATE INDEX tasks_phase ON tasks (phase, state, destination);"
                               " UPDATE tasks SET phase = NULL WHERE state <> 'RUNNING'"),
    ("p009_next_due", "CREATE INDEX tasks_next_due ON tasks (next_attempt_at) WHERE state = 'PENDING'"),
    ("p010_pending_by_destination",
     "CREATE INDEX tasks_pending_by_destination ON tasks (destination, priority DESC, next_attempt_at, id)"
     " WHERE state = 'PENDING';"
     " CREATE INDEX tasks_pending_jobs ON tasks (destination, priority DESC, next_attempt_at, id)"
     " WHERE state = 'PENDING' AND source IS NOT NULL"),
]
