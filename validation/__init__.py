"""Validation: runners, comparator, reports and latency (built on converters/)."""
