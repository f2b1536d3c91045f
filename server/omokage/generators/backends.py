"""Decoder backends: z (B, k) float32 → faces (B, S, S, 3) float32 in [0, 1], one interface, four ways to run it.

| backend       | runs                                             | needs                                  |
|---------------|--------------------------------------------------|----------------------------------------|
| `numpy`       | PCA's linear decode, clip(μ + zC, 0, 1)          | numpy; a `pca` or a `gen` model        |
| `onnxruntime` | the `gen` decoder's decoder.onnx, CPU provider   | onnxruntime; a `gen` model             |
| `tensorrt`    | a TensorRT engine built from that decoder.onnx   | tensorrt + a CUDA GPU (torch for its buffers) |
| `torch-cuda`  | the `gen` decoder's weights in PyTorch on a GPU  | torch with CUDA                        |

Only `numpy` and `onnxruntime` are used while serving on a CPU machine; neither imports torch. `tensorrt` caches its
engine as a plan file in the model's version folder, named after the GPU and the TensorRT version
(`decoder.h100-80gb-hbm3.trt10.13.3.9.plan`), and reloads it when it is there and still fits.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from omokage.errors import UserError

BACKENDS = ("numpy", "onnxruntime", "tensorrt", "torch-cuda")
NEURAL = ("onnxruntime", "tensorrt", "torch-cuda")   # these run the `gen` model's decoder


class BackendUnavailable(UserError):
    """A backend that cannot run here (a package or a GPU is missing), or a model it needs is not fitted."""


def check_latent(Z, width: int, who: str) -> np.ndarray:
    from omokage.features.generator import check_latent as check
    return check(Z, width, who)


class DecoderBackend:
    """z (B, latent_dim) float32 → (B, side, side, 3) float32 in [0, 1]. Subclasses implement `_decode` on checked
    input (a C-contiguous float32 matrix of finite numbers of the right width)."""

    name: ClassVar[str] = "base"
    latent_dim: int
    side: int
    # how another process makes this decoder again, or None: {"backend", "options", "model": the fitted model as data
    # (omokage.sketch.worker.fitted_spec), "model_dir": where it was loaded from}; made by the sketch's
    # make_preview_decoder for its worker process
    worker_spec: dict[str, Any] | None = None

    def decode(self, z) -> np.ndarray:
        Z = check_latent(z, self.latent_dim, f"{self.name} decoder")
        if len(Z) == 0:
            return np.zeros((0, self.side, self.side, 3), np.float32)
        return self._decode(Z)

    def _decode(self, Z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "latent_dim": self.latent_dim, "side": self.side}

    def close(self) -> None:
        """Free what the backend holds (sessions, GPU memory); the object is unusable afterwards."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


class NumpyBackend(DecoderBackend):
    """PCA's linear decode in numpy: the baseline, and what serves when no `gen` model is fitted."""

    name = "numpy"

    def __init__(self, components: np.ndarray, mean: np.ndarray):
        self.components = np.ascontiguousarray(components, dtype=np.float32)
        self.mean = np.ascontiguousarray(mean, dtype=np.float32)
        self.latent_dim = int(self.components.shape[0])
        from omokage.features.linear import _side
        self.side = _side(self.components.shape[1])

    @classmethod
    def from_model(cls, model) -> "NumpyBackend":
        pca = getattr(model, "pca_", model)    # a gen model's PCA, or a pca model itself
        return cls(pca.components_, pca.mean_)

    def _decode(self, Z):
        out = Z @ self.components
        out += self.mean
        np.clip(out, 0.0, 1.0, out=out)
        return out.reshape(len(Z), self.side, self.side, 3)


class OnnxRuntimeBackend(DecoderBackend):
    """The `gen` decoder (decoder.onnx) in ONNX Runtime's CPU provider. `threads` intra-op threads: 1 by default, as
    many sessions share a server's cores (a decode then uses one core and others run beside it)."""

    name = "onnxruntime"

    def __init__(self, onnx_model: bytes | str | os.PathLike, latent_dim: int, side: int, threads: int = 1):
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        source = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
        self.session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.latent_dim, self.side, self.threads = int(latent_dim), int(side), max(1, int(threads))
        self.source = onnx_model     # what the session was made from: a worker process makes its own from it

    @classmethod
    def from_model(cls, model, threads: int = 1) -> "OnnxRuntimeBackend":
        return cls(model.onnx_model_, model.pca_.n_features_out, model.input_side_, threads=threads)

    def _decode(self, Z):
        return self.session.run(None, {self.input_name: Z})[0]

    def describe(self):
        return {**super().describe(), "threads": self.threads}

    def close(self):
        self.session = None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.") or "unknown"


def plan_file_name(gpu_name: str, trt_version: str) -> str:
    """decoder.GPU.trtVERSION.plan, e.g. decoder.h100-80gb-hbm3.trt10.13.3.9.plan: a plan runs only on the GPU model
    and the TensorRT version that built it, so both name the file (the full version: plans are not portable across
    TensorRT releases, patch releases included)."""
    gpu = re.sub(r"^nvidia\s+", "", gpu_name.strip(), flags=re.I)
    return f"decoder.{_slug(gpu)}.trt{_slug(trt_version)}.plan"


class TensorRTBackend(DecoderBackend):
    """The `gen` decoder as a TensorRT engine, built from decoder.onnx with one optimization profile for batches
    `min_batch`..`max_batch` (tuned for `opt_batch`); larger requests are split. The plan is cached in `cache_dir`
    (the model's version folder) and reused while it deserialises on this GPU with the same profile.

    Works with TensorRT 10 and 11: the network is created strongly typed where the flag exists (11 always is, and
    removed the FP16/INT8 builder flags), so the ONNX file's own dtypes set the precision: float32 here. TF32 math
    stays TensorRT's default (allowed) unless `tf32=False`. Device buffers and the stream are PyTorch's."""

    name = "tensorrt"

    def __init__(self, onnx_model: bytes, latent_dim: int, side: int, cache_dir: str | os.PathLike | None = None,
                 min_batch: int = 1, opt_batch: int = 8, max_batch: int = 64, device: int = 0, tf32: bool = True,
                 workspace_bytes: int = 1 << 30):
        import tensorrt as trt
        import torch
        if not (1 <= min_batch <= opt_batch <= max_batch):
            raise ValueError(f"tensorrt: need 1 <= min_batch <= opt_batch <= max_batch, got {min_batch}, "
                             f"{opt_batch}, {max_batch}")
        self.trt, self.torch = trt, torch
        self.latent_dim, self.side = int(latent_dim), int(side)
        self.profile = (int(min_batch), int(opt_batch), int(max_batch))
        self.device = torch.device("cuda", device)
        self.gpu_name = torch.cuda.get_device_name(self.device)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.plan_path = Path(cache_dir) / plan_file_name(self.gpu_name, trt.__version__) if cache_dir else None
        self.built = False
        engine = self._load_cached()
        if engine is None:
            plan = self._build(onnx_model, tf32, workspace_bytes)
            engine = self._deserialize(plan)
            if engine is None:
                raise RuntimeError("tensorrt: the engine just built does not deserialise")
            self.built = True
            self._save(plan)
        self.engine = engine
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise RuntimeError(f"tensorrt: expected one input and one output, got {inputs} and {outputs}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.in_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self.input_name)))
        self.out_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self.output_name)))
        torch_dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float16): torch.float16}
        self.stream = torch.cuda.Stream(device=self.device)
        mb = self.profile[2]
        self.z_dev = torch.empty((mb, self.latent_dim), dtype=torch_dtype[self.in_dtype], device=self.device)
        self.out_dev = torch.empty((mb, self.side, self.side, 3), dtype=torch_dtype[self.out_dtype],
                                   device=self.device)
        self.context.set_tensor_address(self.input_name, self.z_dev.data_ptr())
        self.context.set_tensor_address(self.output_name, self.out_dev.data_ptr())
        self._lock = threading.Lock()

    @classmethod
    def from_model(cls, model, cache_dir=None, **options) -> "TensorRTBackend":
        return cls(model.onnx_model_, model.pca_.n_features_out, model.input_side_, cache_dir=cache_dir, **options)

    # -- engine: build, cache, load ------------------------------------------------------------------
    def _deserialize(self, plan: bytes):
        runtime = self.trt.Runtime(self.logger)
        self._runtime = runtime        # the runtime must outlive its engines
        return runtime.deserialize_cuda_engine(plan)

    def _load_cached(self):
        if self.plan_path is None or not self.plan_path.is_file():
            return None
        try:
            engine = self._deserialize(self.plan_path.read_bytes())
        except Exception:   # noqa: BLE001 - a stale or corrupt plan is rebuilt, never fatal
            engine = None
        if engine is None:
            return None
        name = next(n for n in (engine.get_tensor_name(i) for i in range(engine.num_io_tensors))
                    if engine.get_tensor_mode(n) == self.trt.TensorIOMode.INPUT)
        shapes = engine.get_tensor_profile_shape(name, 0)
        if [int(s[0]) for s in shapes] != list(self.profile):
            return None                 # built for another batch range: rebuild
        return engine

    def _build(self, onnx_model: bytes, tf32: bool, workspace_bytes: int) -> bytes:
        trt = self.trt
        builder = trt.Builder(self.logger)
        flags = 0
        creation = trt.NetworkDefinitionCreationFlag
        if hasattr(creation, "STRONGLY_TYPED"):     # TensorRT ≥ 9.1; 11 is always strongly typed
            flags |= 1 << int(creation.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(onnx_model):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"tensorrt: could not parse decoder.onnx: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
        if not tf32 and hasattr(trt.BuilderFlag, "TF32"):
            config.clear_flag(trt.BuilderFlag.TF32)
        profile = builder.create_optimization_profile()
        name = network.get_input(0).name
        lo, opt, hi = self.profile
        k = self.latent_dim
        profile.set_shape(name, (lo, k), (opt, k), (hi, k))
        config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise RuntimeError("tensorrt: building the engine failed (see TensorRT's log above)")
        return bytes(plan)

    def _save(self, plan: bytes) -> None:
        if self.plan_path is None:
            return
        tmp = self.plan_path.with_name(f".{self.plan_path.name}.partial-{os.getpid()}")
        try:
            tmp.write_bytes(plan)
            os.replace(tmp, self.plan_path)
        except OSError as exc:      # a read-only model repository: the engine still serves, built again next time
            warnings.warn(f"tensorrt: could not cache the engine as {self.plan_path}: {exc}", stacklevel=3)
            tmp.unlink(missing_ok=True)

    # -- inference ------------------------------------------------------------------------------------
    def _decode(self, Z):
        torch = self.torch
        out = np.empty((len(Z), self.side, self.side, 3), np.float32)
        mb = self.profile[2]
        with self._lock, torch.cuda.stream(self.stream):
            for s in range(0, len(Z), mb):
                chunk = Z[s:s + mb]
                n = len(chunk)
                if n < self.profile[0]:                # below the profile's minimum: pad with zeros
                    chunk = np.concatenate([chunk, np.zeros((self.profile[0] - n, self.latent_dim), np.float32)])
                m = len(chunk)
                self.z_dev[:m].copy_(torch.from_numpy(np.ascontiguousarray(chunk, self.in_dtype)))
                self.context.set_input_shape(self.input_name, (m, self.latent_dim))
                if not self.context.execute_async_v3(self.stream.cuda_stream):
                    raise RuntimeError("tensorrt: execute_async_v3 failed")
                out[s:s + n] = self.out_dev[:n].cpu().numpy()    # waits for the stream
        return out

    def describe(self):
        return {**super().describe(), "gpu": self.gpu_name, "tensorrt": self.trt.__version__,
                "profile": list(self.profile), "plan": str(self.plan_path) if self.plan_path else None,
                "built": self.built}

    def close(self):
        self.context = self.engine = None
        self.z_dev = self.out_dev = None


class TorchCudaBackend(DecoderBackend):
    """The `gen` decoder's weights in PyTorch on a CUDA GPU. Eager, or with `cuda_graphs=True` one CUDA graph per
    batch size of `GRAPH_BATCHES`, all recorded when the backend is made: a request runs on the smallest recorded size
    that holds it (padded with zeros; larger ones in pieces of the largest), so a server's varying batches never record
    a graph while a user waits. Serves previews on a GPU where TensorRT is not installed (`auto` takes TensorRT first).
    """

    name = "torch-cuda"
    GRAPH_BATCHES = (1, 2, 4, 8, 16, 32, 64)

    def __init__(self, net, latent_dim: int, side: int, device: int = 0, cuda_graphs: bool = False,
                 graph_batches=GRAPH_BATCHES):
        import torch
        self.torch = torch
        self.device = torch.device("cuda", device)
        self.net = net.to(self.device).eval()
        self.latent_dim, self.side, self.cuda_graphs = int(latent_dim), int(side), bool(cuda_graphs)
        self.graph_batches = tuple(sorted({int(b) for b in graph_batches}))
        if self.cuda_graphs and (not self.graph_batches or self.graph_batches[0] < 1):
            raise ValueError(f"graph_batches must be positive batch sizes, got {graph_batches!r}")
        self.gpu_name = torch.cuda.get_device_name(self.device)
        self._graphs: dict[int, tuple] = {}
        self._lock = threading.Lock()
        if self.cuda_graphs:
            with self._lock:
                for b in self.graph_batches:
                    self._graph(b)

    @classmethod
    def from_model(cls, model, **options) -> "TorchCudaBackend":
        import copy
        return cls(copy.deepcopy(model.torch_net()), model.pca_.n_features_out, model.input_side_, **options)

    def _graph(self, n: int):
        torch = self.torch
        if n not in self._graphs:
            static_in = torch.zeros((n, self.latent_dim), device=self.device)
            side = torch.cuda.Stream(device=self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side), torch.inference_mode():
                for _ in range(2):                      # warm-up before capture, as PyTorch asks
                    self.net(static_in)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), torch.inference_mode():
                static_out = self.net(static_in)
            self._graphs[n] = (graph, static_in, static_out)
        return self._graphs[n]

    def _decode(self, Z):
        torch = self.torch
        with self._lock, torch.inference_mode():
            if not self.cuda_graphs:
                return self.net(torch.from_numpy(Z).to(self.device)).cpu().numpy()
            largest = self.graph_batches[-1]
            pieces = []
            for s in range(0, len(Z), largest):
                chunk = torch.from_numpy(Z[s:s + largest])
                n = len(chunk)
                graph, static_in, static_out = self._graph(next(b for b in self.graph_batches if b >= n))
                static_in[:n].copy_(chunk)
                static_in[n:].zero_()                   # padding rows: their outputs are never read
                graph.replay()
                pieces.append(static_out[:n].cpu().numpy())
            # one piece is returned as it came: a copy into a fresh array made batch 64 ten times slower on an H200
            # machine (30 MB of first-touch pages)
            return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def describe(self):
        return {**super().describe(), "gpu": self.gpu_name, "torch": self.torch.__version__,
                "cuda_graphs": self.cuda_graphs,
                **({"graph_batches": list(self.graph_batches)} if self.cuda_graphs else {})}

    def close(self):
        self._graphs.clear()
        self.net = None


# --- which backends can run here --------------------------------------------------------------------------------------

def _no_nvidia_driver() -> bool:
    """True where the machine certainly has no NVIDIA GPU driver (Linux without /proc/driver/nvidia or /dev/nvidia*),
    so that asking costs no torch import on a CPU server."""
    if not sys.platform.startswith("linux"):
        return False
    return not (Path("/proc/driver/nvidia/version").exists() or any(Path("/dev").glob("nvidia[0-9]*")))


def _torch_cuda_reason() -> str | None:
    if importlib.util.find_spec("torch") is None:
        return "PyTorch is not installed"
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    if version.endswith("+cpu"):
        return f"no CUDA GPU: PyTorch {version} is a CPU-only build"
    if _no_nvidia_driver():
        return "no CUDA GPU: no NVIDIA driver on this machine (/proc/driver/nvidia is absent)"
    import torch
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        return f"no CUDA GPU: PyTorch {torch.__version__} ({build}) sees none"
    return None


def backend_reason(name: str) -> str | None:
    """None if backend `name` can run on this machine, else why not (a package or a GPU is missing)."""
    if name == "numpy":
        return None
    if name == "onnxruntime":
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed (pip install onnxruntime)"
        return None
    if name == "torch-cuda":
        return _torch_cuda_reason()
    if name == "tensorrt":
        if importlib.util.find_spec("tensorrt") is None:
            return ("the tensorrt Python package is not installed (pip install tensorrt; its wheels come from "
                    "pypi.nvidia.com, which this machine may not reach)")
        reason = _torch_cuda_reason()
        return None if reason is None else f"{reason} (TensorRT needs a CUDA GPU; its buffers are PyTorch's)"
    raise BackendUnavailable(f"unknown decoder backend {name!r}; choose from {', '.join(BACKENDS)}")


def available_backends(model_dir_or_model=None) -> dict[str, str | None]:
    """{backend: None if it can run here, else the reason it cannot}, for every backend. With a model (a fitted model,
    a version folder or a model repository), the neural backends also need a fitted `gen` model there."""
    reasons = {name: backend_reason(name) for name in BACKENDS}
    if model_dir_or_model is not None:
        try:
            model, _ = _resolve(model_dir_or_model, need_gen=True)
        except UserError as exc:
            for name in NEURAL:
                reasons[name] = reasons[name] or str(exc)
            try:
                _resolve(model_dir_or_model, need_gen=False)
            except UserError as exc2:
                reasons["numpy"] = str(exc2)
    return reasons


def _resolve(model_dir_or_model, need_gen: bool):
    """(model, version folder or None): a fitted gen (or, when a gen model is not needed, pca) model."""
    from omokage.features.base import ModelRepositoryError, latest_version_dir, load_model_dir
    from omokage.features.generator import ResidualDecoder
    from omokage.features.linear import PCAFeatures
    if isinstance(model_dir_or_model, ResidualDecoder):
        return model_dir_or_model, None
    if isinstance(model_dir_or_model, PCAFeatures):
        if need_gen:
            raise BackendUnavailable("a pca model has no neural decoder; fit one: omokage fit CATALOG --models gen")
        return model_dir_or_model, None
    if not isinstance(model_dir_or_model, (str, os.PathLike)):
        raise TypeError(f"expected a gen or pca model, a version folder or a model repository, got "
                        f"{type(model_dir_or_model).__name__}")
    path = Path(model_dir_or_model)
    if (path / "config.json").is_file():
        model, _, _ = load_model_dir(path)
        wrong = not isinstance(model, ResidualDecoder if need_gen else (ResidualDecoder, PCAFeatures))
        if wrong:
            raise BackendUnavailable(f"{path} holds a {model.name!r} model; this backend needs a 'gen' model"
                                     + ("" if need_gen else " or a 'pca' one"))
        return model, path
    names = ("gen",) if need_gen else ("gen", "pca")
    for name in names:
        try:
            version = latest_version_dir(path, name)
        except ModelRepositoryError:
            continue
        model, _, _ = load_model_dir(version)
        return model, version
    raise BackendUnavailable(f"no fitted {' or '.join(map(repr, names))} model in {path}; run `omokage fit CATALOG "
                             f"--models {','.join(reversed(names))} --out {path}`")


def make_decoder(name: str, model_dir_or_model, **options) -> DecoderBackend:
    """A decoder backend by name, for a fitted model (a `ResidualDecoder` / `PCAFeatures`), a version folder
    (models/gen/3) or a model repository (models/: its newest gen, and for `numpy` its newest pca when no gen is
    fitted). Options: onnxruntime `threads`; tensorrt `min_batch`, `opt_batch`, `max_batch`, `device`, `tf32`,
    `cache_dir` (default: the model's version folder); torch-cuda `device`, `cuda_graphs`."""
    if name not in BACKENDS:
        raise BackendUnavailable(f"unknown decoder backend {name!r}; choose from {', '.join(BACKENDS)}")
    reason = backend_reason(name)
    if reason is not None:
        raise BackendUnavailable(f"the {name} backend cannot run here: {reason}")
    model, version_dir = _resolve(model_dir_or_model, need_gen=name in NEURAL)
    if name == "numpy":
        return NumpyBackend.from_model(model)
    if name == "onnxruntime":
        return OnnxRuntimeBackend.from_model(model, **options)
    if name == "tensorrt":
        options.setdefault("cache_dir", version_dir)
        return TensorRTBackend.from_model(model, **options)
    return TorchCudaBackend.from_model(model, **options)
