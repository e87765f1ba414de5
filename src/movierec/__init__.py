"""movierec: a movie recommender that runs its whole machine-learning life cycle."""

__version__ = "0.1.0"
