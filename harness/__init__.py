"""Floors 3-6: the training engine, the sweep, reports and the CLI."""
