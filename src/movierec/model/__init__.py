"""The recommendation model: one interface (`recommender.Recommender`) and the two-stage model
that implements it, typed parameters (`params`), the training data (`data`), the CF models
(`cf`) and their fitted state (`stage`), pair features (`features`), the stacked rating model
(`rating`), candidates and ranking (`ranking`), re-ranking (`rerank`), cold start
(`cold_start`) and tuning (`tune`). Takes its parameters, never the service's settings."""
