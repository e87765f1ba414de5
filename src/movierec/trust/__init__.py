"""Trust: tracing a response to its model, code and data, and the feedback-loop, fairness
and concentration analyses."""
