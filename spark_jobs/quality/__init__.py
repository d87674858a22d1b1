"""Opt-in quality rules (Gopher, C4, FineWeb) as the ``quality`` row stage."""
