"""S4LExampleGen: converts a data source and builds the labelled/unlabelled/eval splits."""
