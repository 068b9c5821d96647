"""Command handlers of the rectification service, by subject (``tasks``, ``campaign``)."""
