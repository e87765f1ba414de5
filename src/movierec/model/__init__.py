"""The recommendation model: one interface (`recommender.Recommender`), typed parameters, the
collaborative-filtering parts, pair features, the stacked rating model, candidate generation
and ranking, re-ranking, cold start and tuning. Takes its parameters, never the service's
settings."""
