"""Stored rows and domain results → the API's response contracts, one module per router."""
