"""Tools around serving: capacity plans, batch scoring, figures."""
