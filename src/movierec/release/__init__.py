"""Online evaluation and release: the served log, per-arm online metrics, the statistics, the
decision policy, and the evaluator that moves the canary."""
