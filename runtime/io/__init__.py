"""Input and output: inputs (files, bytes), decoding, and record writers."""
