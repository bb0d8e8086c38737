"""HTTP routes: thin functions that parse, delegate and return."""
