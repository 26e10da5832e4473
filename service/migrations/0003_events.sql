-- depends: 0002_analytics
-- capvid schema, events: every state transition is announced by the database itself, progress of
-- AI work is stored, and each web process's in-memory status cache is kept exact by notifications.
-- NOTIFY is transactional: a notification is delivered only if its transaction commits, and in
-- commit order, so a listener never hears of a change that was rolled back.

ALTER TABLE videos
    ADD COLUMN ai_progress real CHECK (ai_progress BETWEEN 0 AND 1),
    ADD COLUMN ai_step     text;

-- capvid_events: one notification per video_events row, from a trigger so that no code path can
-- forget it. Kept well under NOTIFY's 8000-byte limit: a detail too large to carry is left out
-- ("more": true) and the listener reads it from the table.
CREATE FUNCTION notify_video_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    payload jsonb := jsonb_build_object(
        'id', NEW.id, 'v', NEW.video_id, 'k', NEW.kind, 's', NEW.status, 'r', NEW.run, 'a', NEW.attempt);
BEGIN
    IF octet_length(NEW.detail::text) <= 6000 THEN
        payload := payload || jsonb_build_object('d', NEW.detail);
    ELSE
        payload := payload || jsonb_build_object('more', true);
    END IF;
    PERFORM pg_notify('capvid_events', payload::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER notify_video_event AFTER INSERT ON video_events
    FOR EACH ROW EXECUTE FUNCTION notify_video_event();

-- capvid_cache: what the status route answers from memory (who owns a video, whether it is
-- public, its transcription status; which token belongs to which user) changed or is gone.
-- An update carries the new values so a listener can apply it without reading the row.
CREATE FUNCTION notify_video_access() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('capvid_cache', jsonb_build_object('v', OLD.id)::text);
    ELSE
        PERFORM pg_notify('capvid_cache', jsonb_build_object(
            'v', NEW.id, 'o', NEW.owner_id, 'p', NEW.public, 's', NEW.transcription_status)::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER notify_video_access AFTER UPDATE OF transcription_status, public, owner_id ON videos
    FOR EACH ROW
    WHEN (OLD.transcription_status IS DISTINCT FROM NEW.transcription_status
          OR OLD.public IS DISTINCT FROM NEW.public
          OR OLD.owner_id IS DISTINCT FROM NEW.owner_id)
    EXECUTE FUNCTION notify_video_access();
CREATE TRIGGER notify_video_gone AFTER DELETE ON videos
    FOR EACH ROW EXECUTE FUNCTION notify_video_access();

-- A token revoked, moved or deleted (also by a user's cascade): forget it by its hash.
CREATE FUNCTION notify_token_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('capvid_cache', jsonb_build_object('t', encode(OLD.token_hash, 'hex'))::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER notify_token_change AFTER UPDATE OF revoked_at, user_id, token_hash ON api_keys
    FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
          OR OLD.user_id IS DISTINCT FROM NEW.user_id
          OR OLD.token_hash IS DISTINCT FROM NEW.token_hash)
    EXECUTE FUNCTION notify_token_change();
CREATE TRIGGER notify_token_gone AFTER DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION notify_token_change();

-- A user's identity or rights changed, or the user is gone: forget every token of theirs.
CREATE FUNCTION notify_user_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('capvid_cache', jsonb_build_object('u', OLD.id)::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER notify_user_change AFTER UPDATE OF is_admin, email ON users
    FOR EACH ROW
    WHEN (OLD.is_admin IS DISTINCT FROM NEW.is_admin OR OLD.email IS DISTINCT FROM NEW.email)
    EXECUTE FUNCTION notify_user_change();
CREATE TRIGGER notify_user_gone AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION notify_user_change();

-- TRUNCATE fires no row triggers: forget everything.
CREATE FUNCTION notify_cache_reset() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('capvid_cache', '{"all": true}');
    RETURN NULL;
END
$$;

CREATE TRIGGER notify_cache_reset AFTER TRUNCATE ON videos FOR EACH STATEMENT EXECUTE FUNCTION notify_cache_reset();
CREATE TRIGGER notify_cache_reset AFTER TRUNCATE ON api_keys FOR EACH STATEMENT EXECUTE FUNCTION notify_cache_reset();
CREATE TRIGGER notify_cache_reset AFTER TRUNCATE ON users FOR EACH STATEMENT EXECUTE FUNCTION notify_cache_reset();
