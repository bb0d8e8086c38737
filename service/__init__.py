"""The heldout FastAPI service."""
