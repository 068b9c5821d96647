"""Delivery channels: how a rendered notice reaches a person or a group."""
