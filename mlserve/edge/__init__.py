"""Optimisation for the edge: TFLite/int8 conversion, LiteRT, comparing formats."""
