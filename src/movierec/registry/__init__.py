"""The model registry: versioned, hashed bundles under `models/`, and `routing.json`, the one
place that says what is served."""
