"""The generation runtime: bundles, ONNX Runtime sessions, the pipeline. No Qt, no torch."""
