"""Benchmarks: commands that print figures. Nothing here is a test."""
