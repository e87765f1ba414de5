"""Events in, tables out: real MovieLens data, the course event log, its sources (file, Kafka,
replay), the DataPipeline (ingest), the lake's tables, data-quality checks, the fixed holdout
and the training snapshots."""
