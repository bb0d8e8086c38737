"""Prometheus instruments, and drift computation over logged features (Evidently)."""
