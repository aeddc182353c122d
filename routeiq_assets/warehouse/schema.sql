-- The RouteIQ warehouse: every table is rebuilt from the raw store, batch by batch.
-- A batch is one raw file (named by its SHA-256); each batch is written delete-then-insert in one
-- transaction, so a rerun never duplicates and a crash never leaves half a batch.
--
-- Ids that are unique a row (event, trace and span ids of decisions and calls) are stored
-- uncompressed: DuckDB's string compression cannot shrink them much and costs about a sixth of
-- the writes' time. Repeated strings stay compressed.

CREATE TABLE IF NOT EXISTS raw_files (
    batch_id        VARCHAR PRIMARY KEY,   -- first 16 hex of sha256: the Dagster partition key
    sha256          VARCHAR NOT NULL,
    original_name   VARCHAR NOT NULL,
    raw_path        VARCHAR NOT NULL,
    format          VARCHAR NOT NULL,
    size_bytes      BIGINT NOT NULL,
    landed_at       TIMESTAMP NOT NULL
);

CREATE TABLE IF NOT EXISTS ingest_log (
    batch_id        VARCHAR PRIMARY KEY,
    records_in      BIGINT NOT NULL,
    decisions       BIGINT NOT NULL,
    llm_calls       BIGINT NOT NULL,
    duplicates      BIGINT NOT NULL,
    quarantined     BIGINT NOT NULL,
    feedback        BIGINT NOT NULL,
    ingested_at     TIMESTAMP NOT NULL
);

CREATE TABLE IF NOT EXISTS router_decisions (
    event_id              VARCHAR NOT NULL USING COMPRESSION uncompressed,
    batch_id              VARCHAR NOT NULL,
    location              VARCHAR,
    contract_version      VARCHAR NOT NULL,
    contract_name         VARCHAR,
    trace_id              VARCHAR USING COMPRESSION uncompressed,  -- NULL: no trace context
    span_id               VARCHAR USING COMPRESSION uncompressed,
    parent_span_id        VARCHAR,
    timestamp_utc         TIMESTAMPTZ,
    timestamp_unix_ms     BIGINT,
    requested_model       VARCHAR,
    query_length          INTEGER,
    user_id               VARCHAR,
    team_id               VARCHAR,
    api_type              VARCHAR,
    request_metadata      JSON,
    strategy_name         VARCHAR,
    strategy_version      VARCHAR,
    selected_deployment   VARCHAR,
    selection_reason      VARCHAR,
    experiment_id         VARCHAR,
    experiment_variant    VARCHAR,
    experiment_strategy_name    VARCHAR,
    experiment_strategy_version VARCHAR,
    experiment_weight     DOUBLE,
    experiment_total_weight DOUBLE,
    experiment_hash_bucket INTEGER,
    experiment_hash_key_type VARCHAR,
    total_ms              DOUBLE,
    strategy_ms           DOUBLE,
    embedding_ms          DOUBLE,
    candidate_filter_ms   DOUBLE,
    outcome_status        VARCHAR NOT NULL,
    error_message         VARCHAR,
    error_type            VARCHAR,
    input_tokens          BIGINT,
    output_tokens         BIGINT,
    total_tokens          BIGINT,
    outcome_api_type      VARCHAR,
    fallback_triggered    BOOLEAN,
    fallback_original_model VARCHAR,
    fallback_reason       VARCHAR,
    fallback_attempt      INTEGER,
    num_candidates        INTEGER,
    selection_propensity  DOUBLE,   -- probability the logging policy gave the selected model
    logging_policy        VARCHAR,
    quality_score         DOUBLE,   -- an outcome score carried by the event, when known
    custom_attributes     JSON
);

CREATE TABLE IF NOT EXISTS decision_candidates (
    event_id      VARCHAR NOT NULL,
    batch_id      VARCHAR NOT NULL,
    position      INTEGER NOT NULL,
    model_name    VARCHAR NOT NULL,
    provider      VARCHAR,
    score         DOUBLE,
    available     BOOLEAN,
    is_selected   BOOLEAN NOT NULL
);

CREATE TABLE IF NOT EXISTS llm_calls (
    trace_id        VARCHAR NOT NULL USING COMPRESSION uncompressed,
    span_id         VARCHAR NOT NULL USING COMPRESSION uncompressed,
    batch_id        VARCHAR NOT NULL,
    location        VARCHAR,
    parent_span_id  VARCHAR USING COMPRESSION uncompressed,
    span_name       VARCHAR,
    prompt_text     VARCHAR,
    prompt_sha256   VARCHAR,
    request_model   VARCHAR,
    response_model  VARCHAR,
    completion      VARCHAR,
    input_tokens    BIGINT,
    output_tokens   BIGINT,
    total_tokens    BIGINT,
    duration_ms     DOUBLE,
    start_unix_ms   BIGINT,
    status          VARCHAR,
    task            VARCHAR,
    quality_score   DOUBLE,    -- legacy traces.jsonl `performance`, when the source has one
    ground_truth    VARCHAR
);

-- How decisions and LLM calls pair up by trace id, warehouse-wide (one row), as of the ingest
-- log's state it names (its row count and latest ingested_at): an ingest run adds what its new
-- batches changed instead of joining the whole tables again (store.advance_pairing). Only the
-- ingest path writes router_decisions and llm_calls (and the ingest log with them); after editing
-- either by hand, DELETE FROM trace_pairing, and the next ingest run joins the whole tables.
CREATE TABLE IF NOT EXISTS trace_pairing (
    decisions_with_call     BIGINT NOT NULL,
    decisions_without_call  BIGINT NOT NULL,
    calls_without_decision  BIGINT NOT NULL,
    ingest_log_rows         BIGINT NOT NULL,
    ingest_log_latest       TIMESTAMP
);

CREATE TABLE IF NOT EXISTS quarantine (
    batch_id        VARCHAR NOT NULL,
    source          VARCHAR NOT NULL,
    location        VARCHAR NOT NULL,
    reason          VARCHAR NOT NULL,
    raw_excerpt     VARCHAR,
    quarantined_at  TIMESTAMP NOT NULL
);

CREATE TABLE IF NOT EXISTS query_embeddings (
    text_sha256     VARCHAR NOT NULL,
    model_name      VARCHAR NOT NULL,
    dim             INTEGER NOT NULL,
    embedding       FLOAT[] NOT NULL,
    created_at      TIMESTAMP NOT NULL,
    PRIMARY KEY (text_sha256, model_name)
);

-- One logged decision joined to its LLM call, labelled (rebuilt by routing_examples).
CREATE TABLE IF NOT EXISTS routing_examples (
    event_id        VARCHAR NOT NULL,
    trace_id        VARCHAR,          -- NULL for full-information rows
    query_text      VARCHAR NOT NULL,
    query_sha256    VARCHAR NOT NULL,
    model_name      VARCHAR NOT NULL,
    task            VARCHAR,
    outcome_status  VARCHAR NOT NULL,
    quality         DOUBLE NOT NULL,
    cost_usd        DOUBLE,
    latency_ms      DOUBLE,
    propensity      DOUBLE,
    label_source    VARCHAR NOT NULL,
    is_logged       BOOLEAN NOT NULL,  -- logged traffic (bandit feedback) vs full-information table
    utility         DOUBLE,            -- quality - lambda * cost - mu * latency_s (labeling.yaml)
    timestamp_utc   TIMESTAMPTZ
);

-- Every model's score for the same question: benchmarks, shadow traffic, offline evals.
CREATE TABLE IF NOT EXISTS full_information (
    source          VARCHAR NOT NULL,
    query_text      VARCHAR NOT NULL,
    model_name      VARCHAR NOT NULL,
    quality         DOUBLE NOT NULL,
    output_tokens   BIGINT,
    task            VARCHAR
);

-- LLM-judge or user scores of a logged decision, joined by event_id (else trace_id).
CREATE TABLE IF NOT EXISTS feedback (
    batch_id        VARCHAR NOT NULL,
    location        VARCHAR,
    event_id        VARCHAR,
    trace_id        VARCHAR,
    score           DOUBLE NOT NULL,
    source          VARCHAR,          -- llm_judge | user | ...
    created_at      TIMESTAMPTZ
);

-- (query, model) aggregates with the split each query belongs to.
CREATE TABLE IF NOT EXISTS training_set (
    query_sha256    VARCHAR NOT NULL,
    query_text      VARCHAR NOT NULL,
    model_name      VARCHAR NOT NULL,
    split           VARCHAR NOT NULL,
    quality         DOUBLE NOT NULL,
    cost_usd        DOUBLE,
    latency_ms      DOUBLE,
    propensity      DOUBLE,
    utility         DOUBLE,
    n_obs           INTEGER NOT NULL,
    n_logged        INTEGER NOT NULL
);
