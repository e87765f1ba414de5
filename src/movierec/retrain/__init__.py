"""Training a candidate and the cron-run retrainer: the new-data gate, the holdout comparison
and promotion (the first model becomes stable, a later one starts in shadow)."""
