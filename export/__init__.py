"""PyTorch -> ONNX model bundles, each graph checked against PyTorch."""
