"""The weak-village campaign: HTTP routes, read models, the lights policy and the timer."""
