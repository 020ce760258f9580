-- webhook-ingest keeps no Platform Data in PostgreSQL: raw events live in JetStream,
-- encrypted at rest, until conversation-router has stored them. The schema exists so that
-- the service's role, migrations and readiness work like every other daemon's.
COMMENT ON SCHEMA ingest IS 'webhook-ingest: no tables of Platform Data; raw events live in JetStream';
