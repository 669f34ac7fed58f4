"""Execution and node events: one Redis stream per execution (replay from any event id) and
live delivery to any API process."""
