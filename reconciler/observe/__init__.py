"""Observation: engine facts (ovirtsdk4) and host facts (probe over a transport)."""
