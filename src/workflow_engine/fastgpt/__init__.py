"""FastGPT compatibility: its workflow semantics ported to Python (issue 17)."""
