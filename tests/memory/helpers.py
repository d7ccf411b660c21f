"""Constants shared by the memory tests."""

TENANT = "dev-support"
