"""Prometheus instruments, prediction log, online accuracy and drift."""
