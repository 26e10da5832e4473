-- depends: 0002_analytics
-- capvid schema: webhooks. An owner's endpoints, and one delivery per (endpoint, event) with its
-- log. Deliveries are created by a trigger on video_events, so every transition that records an
-- event (whatever code path writes it) fans out to its owner's endpoints in its own transaction.

CREATE TABLE webhooks (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id         bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url              text NOT NULL CHECK (url ~* '^https?://' AND length(url) <= 2048),
    -- event types ('transcription.complete', ...) or '*' for all of them
    events           text[] NOT NULL CHECK (cardinality(events) >= 1),
    -- Signing key, shown once at creation. Kept as is: signing needs it back (like Stripe's and Mux's).
    secret           text NOT NULL CHECK (secret LIKE 'whsec\_%'),
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- Set when the receiver answers 410 Gone: no more deliveries are made to it.
    disabled_at      timestamptz,
    disabled_reason  text
);
CREATE INDEX webhooks_owner ON webhooks (owner_id, id);

-- One row per event and endpoint. The body is built here once (payload), so every attempt sends
-- the same bytes with the same event id; only the signature's timestamp changes.
CREATE TABLE webhook_deliveries (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id        bigint NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    owner_id          bigint NOT NULL,
    event_id          text NOT NULL,
    event_type        text NOT NULL,
    -- Not a foreign key: deliveries of a deleted video's events (and its video.deleted) still go out.
    video_id          text NOT NULL,
    payload           jsonb NOT NULL,
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled')),
    attempts          integer NOT NULL DEFAULT 0,
    last_status_code  integer,
    last_error        text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    first_attempt_at  timestamptz,
    last_attempt_at   timestamptz,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    -- Held while an attempt is in flight; a second job for the same delivery finds it held.
    lease_until       timestamptz,
    finished_at       timestamptz,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_owner ON webhook_deliveries (owner_id, id DESC);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, id DESC);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';

-- The outbox may now carry deliveries. The allowed list is rebuilt from the current constraint plus
-- ours, so functions that an earlier migration added are kept whatever order migrations ran in.
DO $$
DECLARE
    allowed text[];
BEGIN
    SELECT array_agg(DISTINCT m[1]) INTO allowed
      FROM pg_constraint c, regexp_matches(pg_get_constraintdef(c.oid), '''([^'']+)''', 'g') AS m
     WHERE c.conrelid = 'outbox'::regclass AND c.conname = 'outbox_function_check';
    allowed := ARRAY(SELECT DISTINCT f FROM unnest(coalesce(allowed, '{}') || '{deliver_webhook}'::text[]) AS f
                      ORDER BY f);
    ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_function_check;
    EXECUTE format('ALTER TABLE outbox ADD CONSTRAINT outbox_function_check CHECK (function = ANY (%L::text[]))',
                   allowed);
END
$$;

-- transcription/PROCESSING -> 'transcription.processing', ai/SKIPPED -> 'ai.skipped', deleted -> 'video.deleted'.
CREATE FUNCTION webhook_event_type(kind text, status text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN kind = 'deleted' THEN 'video.deleted' ELSE kind || '.' || lower(coalesce(status, 'unknown')) END
$$;

-- For each event: a delivery per enabled endpoint of the event's owner that listens to its type,
-- a job request per delivery, and a wake-up of the relays, all in the transaction of the transition.
CREATE FUNCTION enqueue_webhook_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    etype text := webhook_event_type(NEW.kind, NEW.status);
    requested integer;
BEGIN
    IF NEW.owner_id IS NULL THEN
        RETURN NULL;
    END IF;
    WITH delivery AS (
        INSERT INTO webhook_deliveries (webhook_id, owner_id, event_id, event_type, video_id, payload)
        SELECT w.id, w.owner_id, 'evt_' || NEW.id, etype, NEW.video_id,
               jsonb_build_object(
                   'id', 'evt_' || NEW.id,
                   'type', etype,
                   'createdAt', to_char(NEW.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                   -- detail (reason, note) first: the event's own fields win a name clash
                   'data', CASE WHEN jsonb_typeof(NEW.detail) = 'object' THEN NEW.detail ELSE '{}' END
                           || jsonb_strip_nulls(jsonb_build_object(
                                  'videoId', NEW.video_id, 'status', NEW.status,
                                  'run', NEW.run, 'attempt', NEW.attempt)))
          FROM webhooks w
         WHERE w.owner_id = NEW.owner_id AND w.disabled_at IS NULL
           AND (etype = ANY (w.events) OR '*' = ANY (w.events))
        ON CONFLICT (webhook_id, event_id) DO NOTHING
        RETURNING id, video_id
    )
    INSERT INTO outbox (function, video_id, args)
    SELECT 'deliver_webhook', video_id, jsonb_build_object('deliveryId', id) FROM delivery;
    GET DIAGNOSTICS requested = ROW_COUNT;
    IF requested > 0 THEN
        PERFORM pg_notify('capvid_outbox', '');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER enqueue_webhook_deliveries AFTER INSERT ON video_events
    FOR EACH ROW EXECUTE FUNCTION enqueue_webhook_deliveries();
