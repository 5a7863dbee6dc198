"""ufd build-time side: torch + open_clip -> ONNX bundles. Needs the [export] extra."""
