"""The curated schema of the raw tf.Examples (ImportSchemaGen); a package so that it is
installed with the code."""
