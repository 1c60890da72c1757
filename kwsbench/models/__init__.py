"""KWS models: one module per family, each registering its model cards in `registry`."""
