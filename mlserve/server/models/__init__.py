"""Model versions over time: the manager, loading one version, the config, reload policy."""
