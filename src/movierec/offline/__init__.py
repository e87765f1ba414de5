"""Offline evaluation of any model through the model interface: metric functions, evaluation
overall and per group, and `movierec offline-eval` on any split. Never imports Flask."""
