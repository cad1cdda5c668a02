"""PyTorch -> ONNX model bundles, each graph checked against PyTorch.

- `bundle_writer.export_bundle(model, out_dir, ...)`: a LoadedModel -> a bundle folder.
- `onnx_graphs`: the wrappers with the contract's I/O names and `export_graph`.
- `parity`: ONNX Runtime vs PyTorch on random inputs (tolerances documented there).
- `fp16`: fp16 weights, fp16 compute, saving with external data.
- `optimize`: fusions for the CPU or CUDA provider (`--optimize cpu|cuda`).
- `quantize`: the int8 U-Net, calibrated on sampler inputs, behind a quality gate (`--int8`).
- `preview_fit`: the linear latent -> RGB live-preview map.
- `cli.main(argv)`: `diffusion-studio export SOURCE OUT_DIR`.
"""
import desktop  # noqa: E402,F401  (sets ORT_DISABLE_TELEMETRY before ONNX Runtime loads: zero network)
