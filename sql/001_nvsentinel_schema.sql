-- NVSentinel's own tables, columns and indexes, so NVSentinel's writers keep
-- working unchanged.  Every statement is idempotent: installing over a
-- database NVSentinel already created keeps its data.
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";

CREATE TABLE IF NOT EXISTS maintenance_events (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    event_id VARCHAR(255) UNIQUE NOT NULL,
    csp VARCHAR(50) NOT NULL,
    cluster_name VARCHAR(255) NOT NULL,
    node_name VARCHAR(255),
    status VARCHAR(50) NOT NULL,
    csp_status VARCHAR(50),
    scheduled_start_time TIMESTAMPTZ,
    actual_end_time TIMESTAMPTZ,
    event_received_timestamp TIMESTAMPTZ NOT NULL,
    last_updated_timestamp TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    document JSONB NOT NULL,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS health_events (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    node_name VARCHAR(255) NOT NULL,
    event_type VARCHAR(100),
    severity VARCHAR(50),
    recommended_action VARCHAR(100),
    node_quarantined VARCHAR(50),
    user_pods_eviction_status VARCHAR(50) DEFAULT 'NotStarted',
    user_pods_eviction_message TEXT,
    fault_remediated BOOLEAN,
    last_remediation_timestamp TIMESTAMPTZ,
    document JSONB NOT NULL,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);
ALTER TABLE health_events
    ADD COLUMN IF NOT EXISTS quarantine_finish_timestamp TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS drain_finish_timestamp TIMESTAMPTZ;

CREATE TABLE IF NOT EXISTS datastore_changelog (
    id BIGSERIAL PRIMARY KEY,
    table_name VARCHAR(100) NOT NULL,
    record_id UUID NOT NULL,
    operation VARCHAR(20) NOT NULL,
    old_values JSONB,
    new_values JSONB,
    changed_at TIMESTAMPTZ DEFAULT NOW(),
    processed BOOLEAN DEFAULT FALSE
);

CREATE TABLE IF NOT EXISTS resume_tokens (
    client_name VARCHAR(255) PRIMARY KEY,
    resume_token JSONB NOT NULL,
    last_updated TIMESTAMPTZ DEFAULT NOW()
);

CREATE INDEX IF NOT EXISTS idx_maintenance_events_event_id ON maintenance_events(event_id);
CREATE INDEX IF NOT EXISTS idx_maintenance_events_csp_cluster ON maintenance_events(csp, cluster_name);
CREATE INDEX IF NOT EXISTS idx_maintenance_events_node_status ON maintenance_events(node_name, status);
CREATE INDEX IF NOT EXISTS idx_maintenance_events_status_scheduled ON maintenance_events(status, scheduled_start_time)
    WHERE scheduled_start_time IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_maintenance_events_status_actual_end ON maintenance_events(status, actual_end_time)
    WHERE actual_end_time IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_maintenance_events_received_desc
    ON maintenance_events(csp, cluster_name, event_received_timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_maintenance_events_last_updated ON maintenance_events(last_updated_timestamp DESC);
CREATE INDEX IF NOT EXISTS idx_maintenance_events_csp_status ON maintenance_events(csp_status)
    WHERE csp_status IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_maintenance_events_document_gin ON maintenance_events USING GIN(document);

CREATE INDEX IF NOT EXISTS idx_health_events_node_name ON health_events(node_name);
CREATE INDEX IF NOT EXISTS idx_health_events_node_type ON health_events(node_name, event_type);
CREATE INDEX IF NOT EXISTS idx_health_events_quarantined ON health_events(node_quarantined)
    WHERE node_quarantined IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_health_events_created_desc ON health_events(created_at DESC);
CREATE INDEX IF NOT EXISTS idx_health_events_eviction_status ON health_events(user_pods_eviction_status);
CREATE INDEX IF NOT EXISTS idx_health_events_updated_desc ON health_events(updated_at DESC);
CREATE INDEX IF NOT EXISTS idx_health_events_document_gin ON health_events USING GIN(document);

CREATE INDEX IF NOT EXISTS idx_changelog_unprocessed ON datastore_changelog(changed_at) WHERE processed = FALSE;
CREATE INDEX IF NOT EXISTS idx_changelog_table_record ON datastore_changelog(table_name, record_id);
CREATE INDEX IF NOT EXISTS idx_changelog_resume ON datastore_changelog(table_name, changed_at, id)
    WHERE processed = FALSE;
