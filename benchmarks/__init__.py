"""Scripts that print figures (speed, memory); never run as tests."""
