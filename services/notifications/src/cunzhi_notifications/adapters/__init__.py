"""Adapters: the ledger, the sender, reminders, the directory, HTTP."""
