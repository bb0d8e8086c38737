"""Evaluation jobs: the served model over a whole test set, in leased shards that survive restarts.

Jobs and shards live in the database. A worker in each process claims one shard at a time with a
lease it renews while it runs; a shard's predictions and its progress commit together, only while
the lease is still held, so a killed or stalled worker's shard is taken over whole and counted once.
"""
