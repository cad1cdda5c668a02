"""Shared test builders: tiny ONNX bundles (`tiny_bundles`, no torch) and tiny PyTorch models (`tiny_models`)."""
