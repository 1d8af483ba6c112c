"""Pure values every layer shares: observed facts, kernel command lines, modprobe.d files, the
vocabularies.

No I/O and no imports from the rest of the product except its typed errors (`reconciler.errors`,
itself a leaf): everything else may import this package.
"""
