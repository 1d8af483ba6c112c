"""How the product reaches a fleet: the engine endpoint (connect, identity, pacing) and the
host transports (a local root, OpenSSH). The composition root picks the endpoint once.
"""
