"""Feature lookup before predict (`--feature_lookup FILE`, mlserve extension).

A request carries an entity key (and the request-time features); the server reads the other
features from an online store in one batched read and fills the signature inputs they belong to:

    config.py   the lookup config (YAML or JSON): parsed and checked once, at start-up
    stores/     one module per online store: sqlite.py (embedded), redis.py (production)
    lookup.py   `FeatureLookup.complete(servable, signature, inputs)`: the data plane's one call

The server only ever reads the store. docs/feature-lookup.md describes it.
"""
