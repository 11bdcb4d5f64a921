"""Deciding: an Extraction in, Decisions with the rules that fired out."""
