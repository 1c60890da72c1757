"""Datasets: Speech Commands layouts and protocols, the synthetic set, fingerprints."""
