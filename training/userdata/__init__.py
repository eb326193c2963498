"""A user's own labelled examples for `dlwp train NAME --data PATH`: read, checked, split, streamed.

`formats` reads each accepted format and checks every row (problems carry their file, line or
image path, and column); `rows` holds the parsed rows compactly; `split` holds out a seeded,
per-label share; `streaming` feeds batches to Keras; `provenance` describes the data for the
manifest. Nothing here trains or publishes: `training.retrain` does.
"""
