-- table runs
CREATE TABLE runs (
             run_id TEXT PRIMARY KEY, kind TEXT NOT NULL, engine_key TEXT NOT NULL,
             spec_revision TEXT, plan_digest TEXT, who TEXT NOT NULL, host TEXT NOT NULL,
             pid INTEGER, started_at REAL NOT NULL, finished_at REAL, outcome TEXT, message TEXT, started_seq INTEGER);

-- index runs_by_engine
CREATE INDEX runs_by_engine ON runs (engine_key, started_at);

-- table journal
CREATE TABLE journal (
             entry_id INTEGER PRIMARY KEY AUTOINCREMENT,
             run_id TEXT NOT NULL REFERENCES runs (run_id), step_id TEXT NOT NULL,
             target TEXT NOT NULL, action TEXT NOT NULL, disruption TEXT NOT NULL,
             detail TEXT NOT NULL, started_at REAL NOT NULL, finished_at REAL,
             outcome TEXT, message TEXT, duration REAL);

-- table sqlite_sequence
CREATE TABLE sqlite_sequence(name,seq);

-- index journal_by_run
CREATE INDEX journal_by_run ON journal (run_id, entry_id);

-- table locks
CREATE TABLE locks (
             engine_key TEXT PRIMARY KEY, run_id TEXT NOT NULL, who TEXT NOT NULL,
             host TEXT NOT NULL, pid INTEGER NOT NULL, pid_start INTEGER,
             acquired_at REAL NOT NULL, heartbeat_at REAL NOT NULL);

-- table applied
CREATE TABLE applied (
             engine_key TEXT NOT NULL, object_key TEXT NOT NULL, fingerprint TEXT NOT NULL,
             run_id TEXT NOT NULL, applied_at REAL NOT NULL,
             PRIMARY KEY (engine_key, object_key));

-- table drift
CREATE TABLE drift (
             drift_id INTEGER PRIMARY KEY AUTOINCREMENT, engine_key TEXT NOT NULL,
             object_key TEXT NOT NULL, cls TEXT NOT NULL, message TEXT NOT NULL,
             first_seen REAL NOT NULL, last_seen REAL NOT NULL, resolved_at REAL);

-- index drift_open
CREATE UNIQUE INDEX drift_open ON drift (engine_key, object_key, cls, message)
             WHERE resolved_at IS NULL;

-- index drift_by_engine
CREATE INDEX drift_by_engine ON drift (engine_key, first_seen);

-- table leases
CREATE TABLE leases (
             name TEXT PRIMARY KEY, holder TEXT NOT NULL, term INTEGER NOT NULL,
             acquired_at REAL NOT NULL, renewed_at REAL NOT NULL, expires_at REAL NOT NULL);
