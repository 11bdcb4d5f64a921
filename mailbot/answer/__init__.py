"""Answering: Decisions in, reply messages out (plan, sandboxed templates, MIME)."""
