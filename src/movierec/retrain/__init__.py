"""Training a candidate and the cron-run retrainer: the new-data gate, the holdout comparison
and promotion to a canary."""
