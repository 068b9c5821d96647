"""The rectification domain: pure decisions and read logic, no I/O."""
