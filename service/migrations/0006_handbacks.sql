-- depends: 0003_events 0005_ops
-- A worker stopped on purpose (SIGTERM: a deploy, a scale-down) hands its claim back. Such an
-- attempt is not the work's fault, so it does not count towards TRANSCRIPTION_MAX_ATTEMPTS /
-- AI_MAX_ATTEMPTS: otherwise a few rolling deploys during one long transcription would end it in
-- ERROR. `*_attempt` still counts every claim (guards stay unique); the limit applies to
-- `*_attempt - *_handbacks`.
ALTER TABLE videos
    ADD COLUMN transcription_handbacks integer NOT NULL DEFAULT 0 CHECK (transcription_handbacks >= 0),
    ADD COLUMN ai_handbacks integer NOT NULL DEFAULT 0 CHECK (ai_handbacks >= 0);
