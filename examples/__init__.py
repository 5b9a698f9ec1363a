"""Runnable models from the course material; each has a main() that tests call."""
