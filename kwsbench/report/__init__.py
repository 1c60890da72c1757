"""The HTML report and its figures, from the results store."""
