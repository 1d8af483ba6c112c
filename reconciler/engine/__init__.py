"""The one way to reach an engine: the SDK connection, its errors, the retry helper and the
endpoint seam (a real engine, or whatever the composition root plugs in).
"""
