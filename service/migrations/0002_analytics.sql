-- depends: 0001_initial
-- capvid schema, version 2: counted views, daily view rollups, and per-video counters of views,
-- comments and reactions. Every counter is written in the transaction of the change it counts,
-- so a count is one row read, whatever the number of views or comments.

-- Secrets the service makes for itself when none is configured (the view salt, unless VIEW_SALT).
CREATE TABLE secrets (
    name        text PRIMARY KEY,
    value       bytea NOT NULL CHECK (length(value) >= 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per viewer of a video: when that viewer's view was last counted. A view counts when
-- the viewer has no row, or its last counted view is at least 24 hours old (a guarded upsert).
-- viewer_key is an HMAC-SHA256 of the video id and the viewerId, or of the video id, client IP
-- and User-Agent: raw IPs and ids are never stored, and keys are not linkable across videos.
CREATE TABLE video_viewers (
    video_id         text NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    viewer_key       bytea NOT NULL CHECK (length(viewer_key) = 32),
    last_counted_at  timestamptz NOT NULL,
    PRIMARY KEY (video_id, viewer_key)
);

-- Counted views per UTC day (a range or a daily series reads at most one row per day).
CREATE TABLE video_view_days (
    video_id  text NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    day       date NOT NULL,
    count     bigint NOT NULL CHECK (count >= 0),
    PRIMARY KEY (video_id, day)
);

-- The counters of the Video object and of the analytics route. No row: all zero. A narrow row
-- of its own (not columns of `videos`): a view neither waits for nor rewrites the video's row.
CREATE TABLE video_stats (
    video_id        text PRIMARY KEY REFERENCES videos (id) ON DELETE CASCADE,
    view_count      bigint NOT NULL DEFAULT 0 CHECK (view_count >= 0),
    comment_count   bigint NOT NULL DEFAULT 0 CHECK (comment_count >= 0),
    reaction_count  bigint NOT NULL DEFAULT 0 CHECK (reaction_count >= 0)
);

-- Comment pages are read in id order.
CREATE INDEX comments_video_id ON comments (video_id, id);

-- totalComments (text) and totalReactions (emoji), kept by a trigger in the transaction of every
-- insert, delete or retyping of a comment, whichever code or tool makes it. `+ 1` under the row
-- lock of the upsert is exact under concurrency. When the video itself is being deleted, its
-- counters go with it and the cascade's per-comment updates are skipped.
CREATE FUNCTION count_comments() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') AND EXISTS (SELECT 1 FROM videos WHERE id = OLD.video_id) THEN
        UPDATE video_stats
           SET comment_count = comment_count - (OLD.type = 'text')::int,
               reaction_count = reaction_count - (OLD.type = 'emoji')::int
         WHERE video_id = OLD.video_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO video_stats AS s (video_id, comment_count, reaction_count)
        VALUES (NEW.video_id, (NEW.type = 'text')::int, (NEW.type = 'emoji')::int)
        ON CONFLICT (video_id) DO UPDATE
           SET comment_count = s.comment_count + EXCLUDED.comment_count,
               reaction_count = s.reaction_count + EXCLUDED.reaction_count;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER count_comments AFTER INSERT OR DELETE OR UPDATE OF video_id, type ON comments
    FOR EACH ROW EXECUTE FUNCTION count_comments();

-- Backfill from the comments that exist; writers wait until this commits, so none is missed.
LOCK TABLE comments IN SHARE MODE;
INSERT INTO video_stats (video_id, comment_count, reaction_count)
SELECT video_id, count(*) FILTER (WHERE type = 'text'), count(*) FILTER (WHERE type = 'emoji')
  FROM comments
 GROUP BY video_id;
