"""Pure values every layer shares: observed facts, kernel command lines, the vocabularies.

No I/O and no imports from the rest of the product: everything else may import this package.
"""
