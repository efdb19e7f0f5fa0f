"""Evaluation orchestration: Ray Data embedding extraction, retrieval, linear probes, reports."""
