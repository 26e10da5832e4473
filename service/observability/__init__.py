"""Metrics, request ids, structured logs and the optional rate limit.

`context` (ids in context variables) and `logs` serve web and worker processes alike;
`web` wires the middlewares, the `/metrics` route and the rate limiter into the app.
"""
