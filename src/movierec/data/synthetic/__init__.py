"""A site at the course's scale, shaped by ml-1m (`movierec replay --synthetic`).

The course's site has about a million users and 27,000 movies; only ml-100k and ml-1m exist
here. This module writes a log in the course format of as many users, movies and interactions
as asked, whose statistics are taken from ml-1m (`SiteShape.of`), and a `synthetic` dataset
(users, movies, ratings tables in the MovieLens loader's form) beside it:

- movies: titles, years and genres drawn from ml-1m's; popularity follows ml-1m's rank-count
  curve (movies interpolated along it); a share of them is released during the log's period,
  and nobody watches a movie before its release;
- users: age, gender and occupation drawn from ml-1m's users; how many movies each watches is
  lognormal with the spread of ml-1m's ratings per user, scaled to the interactions asked;
  users arrive over the period, each active over a span drawn from ml-1m's;
- taste: users and movies have latent factors (movies' from their genres plus their own), a
  user picks movies by popularity times exp(taste x affinity), and rates them by a user bias,
  a movie bias, the affinity and noise, cut into 1..5 so the ratings' histogram is ml-1m's
  (cut points measured on a pilot draw), so collaborative filtering has something to learn;
- events: a recommendation line before some interactions (holding the watched movie or not),
  one watch line per minute watched (as `replay` draws them), a rate line after the last.

Memory is bounded and time linear: users are drawn a chunk at a time; each chunk's
interactions go to a temporary file sorted by time bucket; then the buckets are read in order
across the chunk files, their events sorted and written (events that cross a bucket's end wait
for the next). The same seed and sizes give the same bytes.
"""
