"""Foreign-data generators: exports salesml/synth did not make, for the benchmarks."""
