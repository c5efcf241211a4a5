"""Placement of sessions on machines and the executors that run them. Never imports nsml.server."""
