"""Shared test builders: tiny ONNX bundles (`tiny_bundles`, no torch), tiny PyTorch models
(`tiny_models`), data sets (`datasets`), the reference tools' environment (`peers`) and our modules
read from the source (`source`)."""
