"""The lab engine: a faithful simulator of the oVirt REST API and of GPU hosts, for tests and demos."""
