"""Promotion gates: what must hold before an image moves into a stage, and the evidence."""
