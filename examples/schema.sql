-- The partitioned tables the example policies manage (one per examples/*.yaml), empty.
-- pgpart manages partitions, not parents: the parent tables come from your migrations.
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f examples/schema.sql
-- Works on PostgreSQL 13 and later (tested on 15 and 17). scripts/demo loads it.

-- move-to-schema.yaml moves retired partitions here.
CREATE SCHEMA IF NOT EXISTS archive;

-- monthly-retention.yaml: append-only heartbeats, read by time range. BRIN suits a column
-- that grows with insertion order: tiny, and enough to skip most blocks of a partition.
CREATE TABLE public.license_heartbeats (
    license_id     bigint      NOT NULL,
    seen_at        timestamptz NOT NULL,
    client_version text,
    payload        jsonb
) PARTITION BY RANGE (seen_at);
CREATE INDEX license_heartbeats_seen_at_brin ON public.license_heartbeats USING brin (seen_at);
CREATE INDEX license_heartbeats_license ON public.license_heartbeats (license_id, seen_at);

-- daily-repair.yaml: a primary key must include the partition key; the generated column
-- is one that moving rows out of a DEFAULT partition must not insert.
CREATE TABLE public.events (
    id          bigserial,
    occurred_at timestamptz NOT NULL,
    kind        text        NOT NULL,
    body        jsonb,
    kind_upper  text GENERATED ALWAYS AS (upper(kind)) STORED,
    PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);

-- integer-range.yaml: partitioned by its id.
CREATE TABLE public.orders (
    id          bigint        NOT NULL PRIMARY KEY,
    customer_id bigint        NOT NULL,
    total       numeric(12,2) NOT NULL,
    created_at  timestamptz   NOT NULL DEFAULT now()
) PARTITION BY RANGE (id);

-- list.yaml
CREATE TABLE public.customers_by_region (
    customer_id bigint NOT NULL,
    region      text   NOT NULL,
    name        text,
    PRIMARY KEY (customer_id, region)
) PARTITION BY LIST (region);

-- hash.yaml
CREATE TABLE public.sessions (
    session_id uuid        NOT NULL PRIMARY KEY,
    user_id    bigint      NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now()
) PARTITION BY HASH (session_id);

-- move-to-schema.yaml
CREATE TABLE public.audit_log (
    at     timestamptz NOT NULL,
    actor  text        NOT NULL,
    action text        NOT NULL,
    detail jsonb
) PARTITION BY RANGE (at);

-- django-naming.yaml
CREATE TABLE public.page_views (
    id        bigserial,
    viewed_at timestamptz NOT NULL,
    path      text        NOT NULL,
    PRIMARY KEY (id, viewed_at)
) PARTITION BY RANGE (viewed_at);

-- uuidv7-key.yaml: keyed by a UUIDv7 (on PostgreSQL 18: DEFAULT uuidv7()).
CREATE TABLE public.shipments (
    id      uuid NOT NULL,
    carrier text NOT NULL,
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);

-- epoch-millis-key.yaml: keyed by milliseconds since 1970.
CREATE TABLE public.clicks (
    at_ms   bigint NOT NULL,
    element text   NOT NULL
) PARTITION BY RANGE (at_ms);

-- archive-to-directory.yaml
CREATE TABLE public.downloads (
    id          bigint GENERATED ALWAYS AS IDENTITY,
    fetched_at  timestamptz NOT NULL,
    file        text        NOT NULL,
    bytes       bigint
) PARTITION BY RANGE (fetched_at);
