"""Test doubles of external services."""
