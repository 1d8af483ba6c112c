"""Carrying out a plan: verified engine changes (`engine_ops`), host changes (`host_ops`) and the
deadline-bound polling they share (`waiting`)."""
