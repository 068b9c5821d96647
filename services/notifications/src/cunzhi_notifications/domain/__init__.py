"""The notifications domain: kinds, preferences, quiet hours, digests, retries, templates."""
