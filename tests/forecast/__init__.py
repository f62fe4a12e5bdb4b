"""Tests of salesml.models.revenue."""
