"""Benchmarks: programs that print one JSON object on their last line; never timed tests."""
