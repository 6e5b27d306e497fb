-- certq's PostgreSQL schema. Applied by `python -m certq migrate` under an advisory lock; every
-- statement is idempotent, so running it on every deploy (or from many processes at once) is safe.
-- The copy at the repository root (schema.sql) must stay identical (tests/store/test_schema.py).

CREATE TABLE IF NOT EXISTS schema_version (
    version     integer PRIMARY KEY,
    description text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- A model deployment. Its uuid is THE identity used by the queue payload, every foreign key and
-- the worker's lookup of provider + apiModelId: there is no second key to confuse it with.
CREATE TABLE IF NOT EXISTS models (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    provider     text NOT NULL CHECK (provider IN ('openai', 'bedrock')),
    api_model_id text NOT NULL CHECK (length(api_model_id) BETWEEN 1 AND 300),
    base_url     text CHECK (base_url IS NULL OR length(base_url) <= 2000),
    -- The NAME of the environment variable holding the key on the workers; never the secret.
    api_key_env  text CHECK (api_key_env IS NULL OR api_key_env ~ '^[A-Za-z_][A-Za-z0-9_]*$'),
    regions      text[] NOT NULL CHECK (cardinality(regions) BETWEEN 1 AND 50),
    is_active    boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS models_created_idx ON models (created_at DESC, id);
CREATE INDEX IF NOT EXISTS models_active_idx ON models (is_active) WHERE is_active;
-- Version 3: the name a deployment reports where it is not apiModelId; how long its certificates last.
ALTER TABLE models ADD COLUMN IF NOT EXISTS served_model text
    CHECK (served_model IS NULL OR length(served_model) BETWEEN 1 AND 300);
ALTER TABLE models ADD COLUMN IF NOT EXISTS validity_s integer
    CHECK (validity_s IS NULL OR validity_s BETWEEN 60 AND 31622400);

-- One row per request (single model, several models, all models): the "parent job".
-- Counters move once per FINAL outcome of a child; processed never exceeds total.
CREATE TABLE IF NOT EXISTS certification_jobs (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    type              text NOT NULL CHECK (type IN ('SINGLE_MODEL', 'MULTIPLE_MODELS', 'ALL_MODELS')),
    status            text NOT NULL DEFAULT 'QUEUED'
                      CHECK (status IN ('QUEUED', 'PROCESSING', 'COMPLETED', 'FAILED', 'CANCELLED')),
    priority          text NOT NULL DEFAULT 'normal' CHECK (priority IN ('high', 'normal', 'low')),
    regions           text[] NOT NULL,
    model_ids         uuid[] NOT NULL,
    total_models      integer NOT NULL CHECK (total_models >= 0),
    processed_models  integer NOT NULL DEFAULT 0 CHECK (processed_models >= 0),
    success_count     integer NOT NULL DEFAULT 0 CHECK (success_count >= 0),
    warning_count     integer NOT NULL DEFAULT 0 CHECK (warning_count >= 0),
    failure_count     integer NOT NULL DEFAULT 0 CHECK (failure_count >= 0),
    cancelled_count   integer NOT NULL DEFAULT 0 CHECK (cancelled_count >= 0),
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    completed_at      timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT jobs_progress_within_total CHECK (processed_models <= total_models),
    CONSTRAINT jobs_counts_add_up
        CHECK (success_count + warning_count + failure_count + cancelled_count = processed_models)
);
CREATE INDEX IF NOT EXISTS jobs_created_idx ON certification_jobs (created_at DESC, id);
CREATE INDEX IF NOT EXISTS jobs_status_created_idx ON certification_jobs (status, created_at DESC);
CREATE INDEX IF NOT EXISTS jobs_type_created_idx ON certification_jobs (type, created_at DESC);

-- One row per certification run: model x region x job. `id` is also the queue job id.
-- `attempt` is the fence: only the worker holding the current attempt may write an outcome.
-- `generation` counts (re-)enqueues by the reconciler, which restarts the queue's attempt numbers.
CREATE TABLE IF NOT EXISTS certifications (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    job_id             uuid NOT NULL REFERENCES certification_jobs (id) ON DELETE CASCADE,
    model_id           uuid NOT NULL REFERENCES models (id) ON DELETE RESTRICT,
    region             text NOT NULL CHECK (length(region) BETWEEN 1 AND 64),
    status             text NOT NULL DEFAULT 'QUEUED'
                       CHECK (status IN ('PENDING', 'QUEUED', 'PROCESSING', 'CERTIFIED', 'QUALITY_WARNING',
                                         'FAILED', 'CANCELLED')),
    priority           text NOT NULL DEFAULT 'normal' CHECK (priority IN ('high', 'normal', 'low')),
    attempt            integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    generation         integer NOT NULL DEFAULT 1 CHECK (generation >= 1),
    attempt_started_at timestamptz,
    attempt_log        jsonb NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(attempt_log) = 'array'),
    passed             boolean,
    score              double precision CHECK (score IS NULL OR score BETWEEN 0 AND 100),
    rating             text CHECK (rating IS NULL OR rating IN ('A', 'B', 'C', 'D', 'F')),
    test_results       jsonb CHECK (test_results IS NULL OR jsonb_typeof(test_results) = 'array'),
    metrics            jsonb CHECK (metrics IS NULL OR jsonb_typeof(metrics) = 'object'),
    error_category     text CHECK (error_category IS NULL OR error_category IN (
                           'AUTH_ERROR', 'PERMISSION_DENIED', 'MODEL_NOT_FOUND', 'CONFIG_ERROR', 'INVALID_REQUEST',
                           'QUOTA_EXCEEDED', 'PROTOCOL_ERROR', 'CONTENT_FILTERED', 'QUALITY_BELOW_THRESHOLD',
                           'MODEL_MISMATCH', 'INTERNAL_ERROR', 'RATE_LIMITED', 'MODEL_UNAVAILABLE', 'TIMEOUT',
                           'CONNECTION_ERROR', 'SERVER_ERROR')),
    error_message      text,
    duration_ms        integer CHECK (duration_ms IS NULL OR duration_ms >= 0),
    created_at         timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz,
    completed_at       timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT certifications_passed_only_when_certified CHECK (passed IS NOT TRUE OR status = 'CERTIFIED'),
    CONSTRAINT certifications_job_model_region_unique UNIQUE (job_id, model_id, region)
);
-- At most one live (pending, queued or running) certification per model+region: a second request
-- gets the live one back instead of a duplicate, even when two requests race.
CREATE UNIQUE INDEX IF NOT EXISTS certifications_live_unique ON certifications (model_id, region)
    WHERE status IN ('PENDING', 'QUEUED', 'PROCESSING');
CREATE INDEX IF NOT EXISTS certifications_created_idx ON certifications (created_at DESC, id);
CREATE INDEX IF NOT EXISTS certifications_model_created_idx ON certifications (model_id, created_at DESC);
CREATE INDEX IF NOT EXISTS certifications_region_created_idx ON certifications (region, created_at DESC);
CREATE INDEX IF NOT EXISTS certifications_status_created_idx ON certifications (status, created_at DESC);
CREATE INDEX IF NOT EXISTS certifications_job_idx ON certifications (job_id);
-- Version 3 (before the view below, which takes every column): each verdict's expiry, MODEL_MISMATCH.
ALTER TABLE certifications ADD COLUMN IF NOT EXISTS valid_until timestamptz;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'certifications_error_category_check'
                   AND pg_get_constraintdef(oid) LIKE '%MODEL_MISMATCH%') THEN
        ALTER TABLE certifications DROP CONSTRAINT IF EXISTS certifications_error_category_check;
        ALTER TABLE certifications ADD CONSTRAINT certifications_error_category_check CHECK (
            error_category IS NULL OR error_category IN (
                'AUTH_ERROR', 'PERMISSION_DENIED', 'MODEL_NOT_FOUND', 'CONFIG_ERROR', 'INVALID_REQUEST',
                'QUOTA_EXCEEDED', 'PROTOCOL_ERROR', 'CONTENT_FILTERED', 'QUALITY_BELOW_THRESHOLD',
                'MODEL_MISMATCH', 'INTERNAL_ERROR', 'RATE_LIMITED', 'MODEL_UNAVAILABLE', 'TIMEOUT',
                'CONNECTION_ERROR', 'SERVER_ERROR'));
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS certifications_verdict_idx ON certifications (model_id, region, completed_at DESC)
    WHERE status IN ('CERTIFIED', 'QUALITY_WARNING', 'FAILED');
-- Version 6 (before the view, too): the capabilities a verdict verified, failed and found not declared
-- ({"verified": [...], "failed": [...], "notDeclared": [...], ...}); NULL for verdicts from before.
ALTER TABLE certifications ADD COLUMN IF NOT EXISTS capabilities jsonb
    CHECK (capabilities IS NULL OR jsonb_typeof(capabilities) = 'object');

-- The latest verdict per model+region, derived (never written), so it cannot drift from the runs.
-- The same rows as DISTINCT ON (model_id, region) ... ORDER BY completed_at DESC, id, but read from
-- certifications_verdict_idx: a skip scan finds each pair (one probe per pair) and one more probe
-- takes its newest verdict, so it costs models x regions, not the size of the history (schema 2).
CREATE OR REPLACE VIEW latest_certifications AS
WITH RECURSIVE pairs (model_id, region) AS (
    (SELECT c.model_id, c.region FROM certifications c
     WHERE c.status IN ('CERTIFIED', 'QUALITY_WARNING', 'FAILED')
     ORDER BY c.model_id, c.region LIMIT 1)
    UNION ALL
    SELECT next.model_id, next.region FROM pairs p CROSS JOIN LATERAL (
        SELECT c.model_id, c.region FROM certifications c
        WHERE c.status IN ('CERTIFIED', 'QUALITY_WARNING', 'FAILED')
            AND (c.model_id, c.region) > (p.model_id, p.region)
        ORDER BY c.model_id, c.region LIMIT 1
    ) next
)
SELECT latest.* FROM pairs p CROSS JOIN LATERAL (
    SELECT * FROM certifications c
    WHERE c.model_id = p.model_id AND c.region = p.region AND c.status IN ('CERTIFIED', 'QUALITY_WARNING', 'FAILED')
    ORDER BY c.completed_at DESC, c.id LIMIT 1
) latest;

-- Responses of POSTs sent with an Idempotency-Key, replayed when the same key comes again.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    scope       text NOT NULL,
    key         text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    fingerprint text NOT NULL,
    status_code integer NOT NULL,
    body        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_created_idx ON idempotency_keys (created_at);

-- What operators did in the /admin/queues dashboard (who, what, when, and what came of it).
CREATE TABLE IF NOT EXISTS dashboard_audit (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    target      text,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(detail) = 'object'),
    outcome     text NOT NULL,
    remote_addr text
);
CREATE INDEX IF NOT EXISTS dashboard_audit_at_idx ON dashboard_audit (at DESC, id DESC);

-- Version 4: a pair's standing changing class (or its score dropping beyond a margin), and expiries.
-- One row per (verdict, kind): whichever process records it first sends the webhook; the rest find it.
CREATE TABLE IF NOT EXISTS certification_events (
    id                        bigserial PRIMARY KEY,
    at                        timestamptz NOT NULL DEFAULT now(),
    kind                      text NOT NULL CHECK (kind IN ('degraded', 'recovered', 'expired')),
    model_id                  uuid NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    region                    text NOT NULL,
    certification_id          uuid NOT NULL REFERENCES certifications (id) ON DELETE CASCADE,
    status                    text NOT NULL,
    score                     double precision,
    previous_certification_id uuid REFERENCES certifications (id) ON DELETE SET NULL,
    previous_status           text,
    previous_score            double precision,
    CONSTRAINT certification_events_once UNIQUE (certification_id, kind)
);
CREATE INDEX IF NOT EXISTS certification_events_at_idx ON certification_events (at DESC, id DESC);
CREATE INDEX IF NOT EXISTS certification_events_pair_idx ON certification_events (model_id, region, at DESC);

-- Version 5: schedules (a cron expression in a time zone, a target, a filter, a catch-up policy) and the slots
-- they fired. A slot fires once: its row (unique per schedule and slot time) commits with its job.
CREATE TABLE IF NOT EXISTS schedules (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    cron              text NOT NULL CHECK (length(cron) BETWEEN 1 AND 200),
    timezone          text NOT NULL CHECK (length(timezone) BETWEEN 1 AND 100),
    -- Empty: every active model / every region each model offers.
    model_ids         uuid[] NOT NULL DEFAULT '{}',
    regions           text[] NOT NULL DEFAULT '{}',
    priority          text NOT NULL DEFAULT 'normal' CHECK (priority IN ('high', 'normal', 'low')),
    filter_standings  text[] CHECK (filter_standings IS NULL OR (cardinality(filter_standings) >= 1
                          AND filter_standings <@ ARRAY['CERTIFIED', 'QUALITY_WARNING', 'FAILED', 'EXPIRED',
                                                        'NEVER_CERTIFIED'])),
    filter_expiring_s integer CHECK (filter_expiring_s IS NULL OR filter_expiring_s BETWEEN 60 AND 31622400),
    catch_up          text NOT NULL DEFAULT 'once' CHECK (catch_up IN ('once', 'skip')),
    paused            boolean NOT NULL DEFAULT false,
    next_slot_at      timestamptz NOT NULL,
    last_slot_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schedules_one_filter CHECK (filter_standings IS NULL OR filter_expiring_s IS NULL)
);
-- What every worker asks about once a second: one probe, nothing read while no schedule is due.
CREATE INDEX IF NOT EXISTS schedules_due_idx ON schedules (next_slot_at) WHERE NOT paused;
CREATE TABLE IF NOT EXISTS schedule_slots (
    schedule_id  uuid NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    slot_at      timestamptz NOT NULL,
    fired_at     timestamptz NOT NULL DEFAULT now(),
    outcome      text NOT NULL CHECK (outcome IN ('fired', 'dropped')),
    missed       integer NOT NULL DEFAULT 0 CHECK (missed >= 0),
    missed_since timestamptz,
    job_id       uuid REFERENCES certification_jobs (id) ON DELETE SET NULL,
    queued       integer NOT NULL DEFAULT 0 CHECK (queued >= 0),
    skipped      integer NOT NULL DEFAULT 0 CHECK (skipped >= 0),
    PRIMARY KEY (schedule_id, slot_at)
);
CREATE INDEX IF NOT EXISTS schedule_slots_job_idx ON schedule_slots (job_id) WHERE job_id IS NOT NULL;

-- Version 6: what a deployment declares it can do beyond chat (tools, structuredOutput, contextWindow,
-- maxOutputTokens, tokenAccounting; camelCase, validated by the API). '{}' is the default: chat only.
ALTER TABLE models ADD COLUMN IF NOT EXISTS capabilities jsonb NOT NULL DEFAULT '{}'::jsonb
    CHECK (jsonb_typeof(capabilities) = 'object');

INSERT INTO schema_version (version, description)
VALUES (1, 'models, certification jobs, certifications, latest verdicts, idempotency keys'),
       (2, 'latest_certifications reads one index probe per model+region instead of every verdict'),
       (3, 'served model names, certificate validity (valid_until), MODEL_MISMATCH'),
       (4, 'certification_events: degraded, recovered and expired standings'),
       (5, 'schedules and the slots they fired'),
       (6, 'declared model capabilities and the capabilities each verdict verified')
ON CONFLICT (version) DO NOTHING;
