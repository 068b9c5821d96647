"""The rectification domain: pure decisions folded from events, no I/O."""
