-- depends: 0002_analytics
-- capvid schema, ops: the history of job executions (arq forgets results after keep_result),
-- and indexes that let the ops dashboard find failed videos without reading the whole table.

-- One row per execution of a job function, written by the worker's `recorded` wrapper:
-- inserted when the function starts (outcome NULL while it runs), completed when it ends.
-- Rows are purged after JOB_HISTORY_DAYS by the recovery cron.
CREATE TABLE job_runs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id       text NOT NULL,              -- arq's job id ('capvid:<outbox id>' for relayed jobs)
    function     text NOT NULL,
    video_id     text,                       -- no foreign key: history outlives a deleted video
    run          integer,                    -- the state machine's run named by the job's arguments
    attempt      integer,                    -- the video's attempt within that run, read when the job ends
    try          integer NOT NULL DEFAULT 1, -- arq's job_try
    worker       text NOT NULL,              -- hostname:pid
    queued_at    timestamptz,                -- arq's enqueue time
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    outcome      text CHECK (outcome IN ('complete', 'error', 'skipped', 'retry', 'cancelled', 'failed')),
    detail       text                        -- the job's result, or the reason it failed
);
CREATE INDEX job_runs_started ON job_runs (started_at);
CREATE INDEX job_runs_outcome ON job_runs (outcome, id);
CREATE INDEX job_runs_running ON job_runs (id) WHERE outcome IS NULL;
CREATE INDEX job_runs_video ON job_runs (video_id, id);

-- Videos whose transcription or AI generation ended in ERROR, newest change first.
CREATE INDEX videos_transcription_failed ON videos (updated_at) WHERE transcription_status = 'ERROR';
CREATE INDEX videos_ai_failed ON videos (updated_at) WHERE ai_status = 'ERROR';
