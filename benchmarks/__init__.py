"""Benchmark workloads and runners behind ``codescaler bench``; never part of the test run."""
