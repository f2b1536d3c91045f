"""The event store's schema: a list of migrations, applied in order; `PRAGMA user_version` is how many ran.

Never edit a migration that has shipped: append a new one. docs/studies.md describes every table.
"""

from __future__ import annotations

# Each entry is one migration script (run inside one transaction). user_version N means MIGRATIONS[:N] ran.
MIGRATIONS: list[str] = [
    # 1: sessions, studies, every message in and out, the selection loop's events, questionnaires, and tables ready
    #    for gaze samples, fixations and sketch updates (filled by those features).
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE studies (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        created_at  REAL NOT NULL,
        source      TEXT NOT NULL,          -- the study file as given (TOML)
        config      TEXT NOT NULL           -- the validated definition (JSON)
    );
    CREATE TABLE conditions (
        id        INTEGER PRIMARY KEY,
        study_id  INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
        idx       INTEGER NOT NULL,         -- position in the study file, from 0
        name      TEXT NOT NULL,
        label     TEXT NOT NULL,            -- what participants see (e.g. "System A")
        model     TEXT NOT NULL,
        policy    TEXT NOT NULL,
        start     TEXT NOT NULL,            -- random | image
        UNIQUE (study_id, name)
    );
    CREATE TABLE participants (
        id          INTEGER PRIMARY KEY,
        study_id    INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
        idx         INTEGER NOT NULL,       -- position in the study file: decides the condition order
        code        TEXT NOT NULL,          -- what the participant types in; never shown in reports
        pseudonym   TEXT NOT NULL,          -- P01, P02, ...: what reports and exports show
        UNIQUE (study_id, code),
        UNIQUE (study_id, pseudonym)
    );
    CREATE TABLE trials (
        id              INTEGER PRIMARY KEY,
        participant_id  INTEGER NOT NULL REFERENCES participants(id) ON DELETE CASCADE,
        idx             INTEGER NOT NULL,   -- order within the participant's plan, from 0
        condition_id    INTEGER NOT NULL REFERENCES conditions(id),
        practice        INTEGER NOT NULL DEFAULT 0,
        seed            INTEGER NOT NULL,   -- the selection's seed: a resumed trial replays to the same grid
        task            TEXT NOT NULL,      -- free | target
        target          INTEGER,            -- the target face (target tasks), set when the trial begins
        query           BLOB,               -- an image start's projected query (float32), for replay on resume
        started_at      REAL,
        completed_at    REAL,
        decided_item    INTEGER,
        steps           INTEGER,
        resumes         INTEGER NOT NULL DEFAULT 0,
        UNIQUE (participant_id, idx)
    );
    CREATE TABLE sessions (
        id              TEXT PRIMARY KEY,   -- the protocol's session_id (one WebSocket connection)
        started_at      REAL,
        ended_at        REAL,
        client          TEXT,
        protocol_minor  INTEGER,
        participant_id  INTEGER REFERENCES participants(id) ON DELETE SET NULL,
        messages_in     INTEGER,
        errors_out      INTEGER
    );
    -- every message in and out (direction in/out: the wire, bins replaced by their length, tokens and participant
    -- codes left out) and every event the server logged (direction log: the JSON-lines records)
    CREATE TABLE events (
        seq          INTEGER PRIMARY KEY,
        session_id   TEXT,
        at           REAL NOT NULL,         -- server clock (Unix s): receive time (in), send time (out), event time
        direction    TEXT NOT NULL CHECK (direction IN ('in', 'out', 'log')),
        kind         TEXT NOT NULL,         -- message type or event name
        rid          INTEGER,
        client_time  REAL,                  -- the client's clock where the message carries one (ping.t)
        trial_id     INTEGER,
        body         TEXT NOT NULL          -- JSON
    );
    CREATE INDEX events_session ON events (session_id, seq);
    CREATE INDEX events_trial ON events (trial_id) WHERE trial_id IS NOT NULL;
    CREATE TABLE candidates (               -- every face shown: one row per grid position
        id          INTEGER PRIMARY KEY,
        session_id  TEXT NOT NULL,
        trial_id    INTEGER,
        step        INTEGER NOT NULL,
        position    INTEGER NOT NULL,       -- 0..8, row-major over the 3x3 grid
        item        INTEGER NOT NULL,
        algorithm   TEXT,
        policy      TEXT,
        at          REAL NOT NULL,
        event       TEXT NOT NULL           -- start | choose | skip: what produced the grid
    );
    CREATE INDEX candidates_session ON candidates (session_id, step);
    CREATE INDEX candidates_trial ON candidates (trial_id) WHERE trial_id IS NOT NULL;
    CREATE TABLE choices (
        id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, trial_id INTEGER, step INTEGER NOT NULL,
        item INTEGER NOT NULL, at REAL NOT NULL
    );
    CREATE TABLE skips (
        id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, trial_id INTEGER, step INTEGER NOT NULL, at REAL NOT NULL
    );
    CREATE TABLE ratings (
        id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, trial_id INTEGER, step INTEGER NOT NULL,
        item INTEGER NOT NULL, rating INTEGER NOT NULL, at REAL NOT NULL
    );
    CREATE TABLE decisions (
        id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, trial_id INTEGER, step INTEGER NOT NULL,
        item INTEGER NOT NULL, at REAL NOT NULL
    );
    CREATE UNIQUE INDEX decisions_trial ON decisions (trial_id) WHERE trial_id IS NOT NULL;
    CREATE INDEX choices_trial ON choices (trial_id) WHERE trial_id IS NOT NULL;
    CREATE INDEX skips_trial ON skips (trial_id) WHERE trial_id IS NOT NULL;
    CREATE INDEX ratings_trial ON ratings (trial_id) WHERE trial_id IS NOT NULL;
    CREATE TABLE pings (                    -- latency probes: the clock offset of a session's client
        id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, client_time REAL NOT NULL, server_time REAL NOT NULL
    );
    CREATE TABLE answers (                  -- questionnaire answers; one per participant, questionnaire and item
        id              INTEGER PRIMARY KEY,
        participant_id  INTEGER NOT NULL REFERENCES participants(id) ON DELETE CASCADE,
        questionnaire   TEXT NOT NULL,
        item            TEXT NOT NULL,
        value           TEXT NOT NULL,      -- JSON: an int (likert), a condition name (best/worst) or a string
        session_id      TEXT,
        at              REAL NOT NULL,
        UNIQUE (participant_id, questionnaire, item)
    );
    -- ready for the gaze and sketch features (empty until they write to them)
    CREATE TABLE gaze_samples (
        id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, trial_id INTEGER, client_time REAL, server_time REAL NOT NULL,
        origin_x REAL, origin_y REAL, origin_z REAL, dir_x REAL, dir_y REAL, dir_z REAL,
        grid_x REAL, grid_y REAL,           -- hit point on the 3x3 grid, 0..1 each, when it hits
        item INTEGER, confidence REAL
    );
    CREATE TABLE fixations (
        id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, trial_id INTEGER, start_time REAL NOT NULL,
        end_time REAL NOT NULL, grid_x REAL, grid_y REAL, item INTEGER, step INTEGER
    );
    CREATE TABLE sketch_updates (
        id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, trial_id INTEGER, client_time REAL, server_time REAL NOT NULL,
        strokes BLOB, step INTEGER
    );
    """,
    # 2: sketch_updates filled with what each live sketch result showed (the strokes themselves stay `sketch.*` rows
    #    of `events`): the drawing's revision and stroke count and the faces listed, best first
    """
    ALTER TABLE sketch_updates ADD COLUMN revision INTEGER;
    ALTER TABLE sketch_updates ADD COLUMN stroke_count INTEGER;
    ALTER TABLE sketch_updates ADD COLUMN items TEXT;
    CREATE INDEX sketch_updates_session ON sketch_updates (session_id, server_time);
    """,
    # 3: the ideal faces generated (protocol v1.5 `ideal`): the favourite and the catalog faces listed
    """
    CREATE TABLE ideals (
        id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, trial_id INTEGER, at REAL NOT NULL, near INTEGER,
        items TEXT, score REAL, seconds REAL
    );
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)

# Tables that hold rows about one participant, reached through their sessions or trials (delete-participant).
SESSION_TABLES = ("events", "candidates", "choices", "skips", "ratings", "decisions", "pings", "gaze_samples",
                  "fixations", "sketch_updates", "ideals")
