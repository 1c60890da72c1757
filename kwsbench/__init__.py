"""kwsbench: how accurate is a keyword-spotting model, at what cost, when the audio is noisy
and the sample rate drops."""

__version__ = "0.1.0"
