"""Building bundles: torch -> ONNX export, precisions, validation against torch, writing."""
