"""Blind test sets: upload parsing and validation, audit, storage, scoring, budget and ladder.

Labels and references enter through an upload and leave only as aggregates: nothing in this
package returns, logs or puts in an error message a stored label or reference.
"""
