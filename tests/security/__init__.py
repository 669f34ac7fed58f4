"""Hostile-input tests (issue 14): one test or more per finding, each failing without its fix."""
