"""Ops: the queue API and dashboard (service side) and worker heartbeats."""
