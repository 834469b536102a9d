"""Frozen-feature cache: compute a frozen model prefix once per record and train the rest from the stored outputs."""
