"""Tests of salesml.forecast."""
