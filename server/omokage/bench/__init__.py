"""Benchmarks: each writes JSON and markdown figures to a results folder and prints a table."""
