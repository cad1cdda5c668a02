"""Running a session on a GPU: what does not change stays on the device, and CUDA graphs replay the
U-Net's kernels without launching them one by one.

- `DeviceRunner(model)`: the session through IOBinding. A feed that is the same array object as in
  the previous call (the conditioning: text states, class labels, condition channels, which
  diffusion.guidance builds once per generation) is copied to the device once and stays there; x_t
  and t are copied every step (the samplers are numpy, on the host: for SD at 512x512 one
  2x4x64x64 float copy each way per step, microseconds). The output is bound on the device and
  copied back once.
- CUDA graphs (`cuda_graph=True`, the U-Net on CUDA): ONNX Runtime records one whole call and then
  replays it. That needs static shapes and fixed device buffers, so the runner creates a second
  session from the same file with every symbolic dimension fixed to the shapes of the call
  (ONNX Runtime then folds the shape arithmetic away, so no node is left on the CPU) and
  `enable_cuda_graph`, binds device buffers once, and copies each step's inputs into them. Other
  shapes (another batch or size) rebuild it; a graph that cannot be captured (a node on the CPU)
  drops back to the plain runner for good, with a note in `notes`.
Both work with any ONNX Runtime device ("cpu" included, which is how tests check the binding
logic on a machine without a GPU; CUDA graphs themselves need CUDA).
"""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

CUDA = "CUDAExecutionProvider"


def device_of(session) -> str | None:
    """"cuda" for a session whose first provider is CUDA, else None (plain session.run is best)."""
    return "cuda" if session.get_providers()[0] == CUDA else None


class DeviceRunner:
    """IOBinding for one OnnxModel (see the module docstring)."""

    def __init__(self, model, device: str = "cuda", cuda_graph: bool = False, provider_options: dict | None = None):
        self.model = model
        self.device = device
        self.binding = model.session.io_binding()
        self.kept: dict = {}  # input name -> (the array it came from, its device copy)
        self.cuda_graph = cuda_graph and device == "cuda"
        self.provider_options = dict(provider_options or {})
        self.graph = None  # (shapes, session, binding, {input: OrtValue}, {output: OrtValue})
        self.notes: list[str] = []

    def _device_value(self, name: str, value):
        held = self.kept.get(name)
        if held is not None and held[0] is value:
            return held[1]
        ortvalue = ort.OrtValue.ortvalue_from_numpy(self.model.feed(name, value), self.device, 0)
        self.kept[name] = (value, ortvalue)  # the array is kept alive, so `is` cannot match another one
        return ortvalue

    def run(self, feeds: dict, output: str) -> np.ndarray:
        if self.cuda_graph:
            try:
                return self._run_graph(feeds, output)
            except Exception as exc:  # noqa: BLE001 - capture refused: run without graphs from now on
                self.cuda_graph, self.graph = False, None
                self.notes.append(f"CUDA graphs are off for {self.model.file} ({str(exc).splitlines()[0][:200]})")
        for name, value in feeds.items():
            self.binding.bind_ortvalue_input(name, self._device_value(name, value))
        self.binding.bind_output(output, self.device)
        self.model.session.run_with_iobinding(self.binding)
        return self.binding.copy_outputs_to_cpu()[0]

    def _run_graph(self, feeds: dict, output: str) -> np.ndarray:
        arrays = {name: self.model.feed(name, value) for name, value in feeds.items()}
        shapes = {name: a.shape for name, a in arrays.items()}
        if self.graph is None or self.graph[0] != shapes:
            self.graph = None
            self.graph = self._capture_session(shapes, arrays, output)
        _, session, binding, inputs, outputs = self.graph
        for name, a in arrays.items():
            inputs[name].update_inplace(a)
        session.run_with_iobinding(binding)
        return outputs[output].numpy()

    def _capture_session(self, shapes: dict, arrays: dict, output: str):
        """A session with every symbolic dimension fixed to these shapes and CUDA graphs on."""
        from . import providers

        options = providers.session_options(provider=CUDA)
        sizes = {}  # symbolic dimension -> its size in this call
        for name, (_, declared) in self.model.inputs.items():
            for dim, size in zip(declared, shapes.get(name, ())):
                if isinstance(dim, str) and dim:
                    options.add_free_dimension_override_by_name(dim, int(size))
                    sizes[dim] = int(size)
        cuda = {**self.provider_options, "enable_cuda_graph": "1"}
        session = ort.InferenceSession(str(self.model.path), options, providers=[(CUDA, cuda)])
        binding = session.io_binding()
        inputs = {name: ort.OrtValue.ortvalue_from_numpy(a, self.device, 0) for name, a in arrays.items()}
        for name, value in inputs.items():
            binding.bind_ortvalue_input(name, value)
        out_meta = {o.name: o for o in session.get_outputs()}[output]
        out_shape = [int(sizes.get(d, d)) for d in out_meta.shape]  # an output's symbolic dims are its inputs'
        dtype = np.float16 if out_meta.type == "tensor(float16)" else np.float32
        outputs = {output: ort.OrtValue.ortvalue_from_shape_and_type(out_shape, dtype, self.device, 0)}
        binding.bind_ortvalue_output(output, outputs[output])
        session.run_with_iobinding(binding)  # the first run records the graph
        return shapes, session, binding, inputs, outputs
