"""The spec language: loading, validation and the desired-state model."""
