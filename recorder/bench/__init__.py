"""Benchmarks behind `make bench`: every figure is printed beside a ceiling measured in the same run."""
