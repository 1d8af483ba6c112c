"""Shared test setup: helpers and fixtures more than one test folder uses."""
