"""Set-up shared by test packages: synthetic histories, imported once per session."""
