-- capvid schema, version 1: users, API keys, videos with their job state, comments,
-- the outbox that carries job requests to Redis, and the event log of transitions.

CREATE TABLE users (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email       text NOT NULL UNIQUE CHECK (email <> '' AND length(email) <= 320),
    name        text NOT NULL DEFAULT '',
    is_admin    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash    bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),  -- SHA-256 of the token
    label         text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);

CREATE TABLE videos (
    id                      text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    owner_id                bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name                    text NOT NULL DEFAULT 'My Video',
    public                  boolean NOT NULL DEFAULT true,
    source                  text NOT NULL DEFAULT 'local' CHECK (source IN ('local', 's3')),
    metadata                jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    duration                double precision CHECK (duration >= 0),
    media_key               text,
    media_bytes             bigint CHECK (media_bytes >= 0),
    name_edited             boolean NOT NULL DEFAULT false,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),

    -- Transcription state machine: NULL -> PROCESSING -> COMPLETE | ERROR.
    -- `run` counts requests (a retry or force starts a new run); `attempt` counts claims
    -- within a run; `lease_until` is set while a job holds the video and is extended by its
    -- heartbeat. Every transition is compare-and-set on (status, run, attempt).
    transcription_status        text CHECK (transcription_status IN ('PROCESSING', 'COMPLETE', 'ERROR')),
    transcription_run           integer NOT NULL DEFAULT 0,
    transcription_attempt       integer NOT NULL DEFAULT 0,
    transcription_lease_until   timestamptz,
    transcription_heartbeat_at  timestamptz,
    transcription_progress      real CHECK (transcription_progress BETWEEN 0 AND 1),
    transcription_error         text,
    transcription_note          text,
    transcription_engine        text,
    transcription_started_at    timestamptz,
    transcription_finished_at   timestamptz,

    -- AI metadata state machine; the visible status is metadata.aiGenerationStatus,
    -- kept equal to ai_status by every update that writes either.
    ai_status          text CHECK (ai_status IN ('QUEUED', 'PROCESSING', 'COMPLETE', 'ERROR', 'SKIPPED')),
    ai_run             integer NOT NULL DEFAULT 0,
    ai_attempt         integer NOT NULL DEFAULT 0,
    ai_lease_until     timestamptz,
    ai_heartbeat_at    timestamptz,
    ai_error           text,
    ai_note            text,

    CHECK (metadata->>'aiGenerationStatus' IS NULL
           OR metadata->>'aiGenerationStatus' IN ('QUEUED', 'PROCESSING', 'COMPLETE', 'ERROR', 'SKIPPED')),
    CHECK (metadata->>'enhancedAudioStatus' IS NULL
           OR metadata->>'enhancedAudioStatus' IN ('PROCESSING', 'COMPLETE', 'ERROR', 'SKIPPED'))
);

CREATE INDEX videos_owner_newest ON videos (owner_id, created_at DESC, id DESC);
CREATE INDEX videos_transcription_active ON videos (transcription_lease_until)
    WHERE transcription_status = 'PROCESSING';
CREATE INDEX videos_ai_active ON videos (ai_lease_until)
    WHERE ai_status IN ('QUEUED', 'PROCESSING');

CREATE TABLE comments (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    video_id    text NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    author_id   bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    type        text NOT NULL CHECK (type IN ('text', 'emoji')),
    content     text NOT NULL,
    timestamp   double precision CHECK (timestamp >= 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX comments_video ON comments (video_id, created_at);

-- The outbox: a job request written in the same transaction as the state change that needs
-- it. Relays hand rows to arq with `_job_id` = 'capvid:<id>' (a repeat is absorbed) and set
-- sent_at. Rows are not tied to the video by a foreign key: a cleanup request must outlive it.
CREATE TABLE outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    function    text NOT NULL CHECK (function IN ('transcribe', 'generate_ai', 'cleanup_storage')),
    video_id    text NOT NULL,
    args        jsonb NOT NULL DEFAULT '{}',
    defer_until timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
CREATE INDEX outbox_video ON outbox (video_id);

-- Every state transition, in the transaction that made it (read by ops, events, tests).
CREATE TABLE video_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    video_id    text NOT NULL,
    owner_id    bigint,
    kind        text NOT NULL CHECK (kind IN ('transcription', 'ai', 'deleted')),
    status      text,
    run         integer,
    attempt     integer,
    detail      jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX video_events_video ON video_events (video_id, id);

-- Storage cleanup: one row per deleted video prefix, kept until every object is gone.
CREATE TABLE storage_cleanups (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    video_id      text NOT NULL,
    backend       text NOT NULL CHECK (backend IN ('local', 's3')),
    prefix        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    attempts      integer NOT NULL DEFAULT 0,
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    deleted_keys  bigint NOT NULL DEFAULT 0,
    last_error    text,
    failed_keys   jsonb NOT NULL DEFAULT '[]',
    finished_at   timestamptz
);
CREATE INDEX storage_cleanups_open ON storage_cleanups (id) WHERE finished_at IS NULL;
