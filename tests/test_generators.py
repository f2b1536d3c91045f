"""The `gen` decoder (PCA latent + learned residual) and the decoder backends behind omokage.generators."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from omokage.catalog.store import Catalog
from omokage.features import ALGORITHMS, MODEL_CLASSES, load_model_dir, make_model
from omokage.features.generator import ONNX_FILE, ResidualDecoder
from omokage.generators import BACKENDS, available_backends, make_decoder
from omokage.generators.backends import BackendUnavailable, backend_reason, plan_file_name

REPO = Path(__file__).resolve().parents[1]
# small and quick: a 32 px residual on the 64 px test catalog, 12 components (as the other tests' models)
TINY = dict(n_components=12, residual_size=32, width=16, epochs=25, batch_size=16, learning_rate=2e-3, n_threads=1,
            progress=False)


@pytest.fixture(scope="module")
def X(tiny_catalog):
    return Catalog(tiny_catalog).matrix()


@pytest.fixture(scope="module")
def split(X):
    return X[:128], X[128:]           # fitted on the first 128 faces, judged on the other 32


@pytest.fixture(scope="module")
def gen(split):
    # one BLAS thread, as the server pins it: with two the inner PCA's float rounding differs and this small fit lands
    # elsewhere (held-out RMSE 0.3% under PCA's instead of 0.5%), so the result depended on which tests ran before
    with threadpool_limits(1, user_api="blas"):
        return make_model("gen", **TINY).fit(split[0])


def rmse(R, X):
    return float(np.sqrt(np.mean((np.asarray(R).reshape(len(X), -1) - X) ** 2)))


# --- the model --------------------------------------------------------------------------------------------------------

def test_gen_reconstructs_held_out_faces_better_than_pca(gen, split):
    train, held_out = split
    with threadpool_limits(1, user_api="blas"):
        pca = make_model("pca", n_components=12).fit(train)
    Z = pca.transform(held_out)
    pca_error = rmse(np.clip(pca.inverse_transform(Z), 0, 1), held_out)
    gen_error = rmse(gen.inverse_transform(gen.transform(held_out)), held_out)
    assert gen.best_epoch_ > 0, gen.val_history_
    assert gen_error < 0.995 * pca_error, (gen_error, pca_error)


def test_the_latent_is_the_served_pca(gen, split):
    train, held_out = split
    with threadpool_limits(1, user_api="blas"):      # as the gen fixture's: the same float rounding
        pca = make_model("pca", n_components=12, random_state=0).fit(train)   # what `omokage fit --models pca` fits
    np.testing.assert_allclose(gen.transform(held_out), pca.transform(held_out), atol=1e-5)
    assert gen.pca_model().components_.shape == (12, train.shape[1])


def test_the_residual_starts_at_zero(split):
    """Before any training the decoder is PCA's decode, clipped: the last layer is initialised to zero."""
    untrained = make_model("gen", **{**TINY, "epochs": 0}).fit(split[0])
    Z = untrained.transform(split[1])
    np.testing.assert_allclose(untrained.inverse_transform(Z), untrained.pca_inverse_transform(Z), atol=2e-6)
    assert untrained.best_epoch_ == 0


def test_gen_is_an_estimator_that_is_fitted_but_not_served():
    assert MODEL_CLASSES["gen"] is ResidualDecoder and "gen" not in ALGORITHMS
    assert ResidualDecoder().get_params()["n_components"] == 30


def test_save_load_serves_with_onnx_runtime_and_no_torch(gen, split, tmp_path):
    held_out = split[1][:6]
    Z = gen.transform(held_out)
    R = gen.inverse_transform(Z)
    path = gen.save(tmp_path / "repo")
    assert path == tmp_path / "repo" / "gen" / "1"
    assert sorted(p.name for p in path.iterdir()) == ["config.json", ONNX_FILE, "model.safetensors"]
    config = json.loads((path / "config.json").read_text())
    assert config["name"] == "gen" and config["files"] == [ONNX_FILE]
    np.save(tmp_path / "x.npy", held_out)
    np.save(tmp_path / "z_in.npy", Z)
    code = (
        "import sys, numpy as np\n"
        "from omokage.features import load_model_dir\n"
        "from omokage.generators import make_decoder\n"
        f"m, _, _ = load_model_dir({str(path)!r})\n"
        f"x, z_in = np.load({str(tmp_path / 'x.npy')!r}), np.load({str(tmp_path / 'z_in.npy')!r})\n"
        "z = m.transform(x)\n"
        "r = m.inverse_transform(z_in)\n"
        f"d = make_decoder('onnxruntime', {str(tmp_path / 'repo')!r}).decode(z_in)\n"
        "assert 'torch' not in sys.modules, 'serving imported torch'\n"
        f"np.save({str(tmp_path / 'z.npy')!r}, z); np.save({str(tmp_path / 'r.npy')!r}, r)\n"
        f"np.save({str(tmp_path / 'd.npy')!r}, d)\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    # the projection is a float32 matrix product: its sums may run in another order in another process
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), Z, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(np.load(tmp_path / "r.npy"), R, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "d.npy").reshape(len(R), -1), R, atol=1e-5)
    # the torch module comes back from the saved weights too (for the torch-cuda backend)
    loaded, _, _ = load_model_dir(path)
    import torch
    with torch.inference_mode():
        again = loaded.torch_net()(torch.from_numpy(Z)).numpy().reshape(len(Z), -1)
    np.testing.assert_allclose(again, R, atol=1e-5)


# --- backends ---------------------------------------------------------------------------------------------------------

def test_onnx_runtime_backend_agrees_with_the_torch_module(gen, split):
    import torch
    Z = gen.transform(split[1])
    with torch.inference_mode():
        ref = gen.torch_net()(torch.from_numpy(Z)).numpy()
    for threads in (1, 2):
        out = make_decoder("onnxruntime", gen, threads=threads).decode(Z)
        assert out.shape == (len(Z), 64, 64, 3) and out.dtype == np.float32
        assert 0.0 <= out.min() and out.max() <= 1.0
        assert np.abs(out - ref).max() < 1e-5


def test_numpy_backend_is_pca_inverse_transform(gen, split):
    Z = gen.transform(split[1])
    pca = gen.pca_model()
    expected = np.clip(pca.inverse_transform(Z), 0, 1).reshape(len(Z), 64, 64, 3)
    np.testing.assert_allclose(make_decoder("numpy", gen).decode(Z), expected, atol=1e-6)
    np.testing.assert_allclose(make_decoder("numpy", pca).decode(Z), expected, atol=1e-6)


def test_numpy_is_the_fallback_when_no_gen_model_is_fitted(split, tmp_path):
    pca = make_model("pca", n_components=12).fit(split[0])
    pca.save(tmp_path / "repo")
    Z = pca.transform(split[1][:3])
    out = make_decoder("numpy", tmp_path / "repo").decode(Z)
    np.testing.assert_allclose(out.reshape(3, -1), np.clip(pca.inverse_transform(Z), 0, 1), atol=1e-6)
    with pytest.raises(BackendUnavailable, match="omokage fit"):
        make_decoder("onnxruntime", tmp_path / "repo")
    reasons = available_backends(tmp_path / "repo")
    assert reasons["numpy"] is None and "no fitted 'gen'" in reasons["onnxruntime"]


def test_available_backends_say_why(gen):
    reasons = available_backends(gen)
    assert tuple(reasons) == BACKENDS and reasons["numpy"] is None and reasons["onnxruntime"] is None
    for name in ("tensorrt", "torch-cuda"):
        assert reasons[name] is None or len(reasons[name]) > 20
    with pytest.raises(BackendUnavailable, match="choose from"):
        make_decoder("opengl", gen)


def test_asking_which_backends_run_imports_no_torch_on_a_cpu_machine():
    reason = backend_reason("torch-cuda") or ""
    if "CPU-only build" not in reason and "no NVIDIA driver" not in reason:
        pytest.skip(f"this machine may have a CUDA GPU ({reason or 'torch-cuda can run'}): asking imports torch")
    code = ("import sys; from omokage.generators import available_backends; r = available_backends(); "
            "assert 'torch' not in sys.modules, 'available_backends imported torch'; print(r['torch-cuda'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "no CUDA GPU" in out


def test_plan_file_names_carry_the_gpu_and_tensorrt_version():
    assert plan_file_name("NVIDIA H100 80GB HBM3", "11.4.0") == "decoder.h100-80gb-hbm3.trt11.4.0.plan"
    assert plan_file_name("NVIDIA GeForce RTX 4090", "10.13.3.9") == "decoder.geforce-rtx-4090.trt10.13.3.9.plan"


def test_tensorrt_backend_builds_caches_and_agrees(gen, split, tmp_path):
    reason = backend_reason("tensorrt")
    if reason:
        pytest.skip(f"TensorRT backend unavailable here: {reason}")
    path = gen.save(tmp_path / "repo")
    Z = gen.transform(split[1])
    ref = make_decoder("onnxruntime", gen).decode(Z)
    first = make_decoder("tensorrt", path)
    assert first.describe()["built"] and first.plan_path.parent == path and first.plan_path.is_file()
    assert np.abs(first.decode(Z) - ref).max() < 5e-3          # TF32 convolutions
    big = np.resize(Z, (70, Z.shape[1]))                        # beyond the profile's 64: split in two
    assert first.decode(big).shape == (70, 64, 64, 3)
    first.close()
    again = make_decoder("tensorrt", path)
    assert not again.describe()["built"]                         # the cached plan was loaded
    assert np.abs(again.decode(Z) - ref).max() < 5e-3


def test_torch_cuda_backend_agrees(gen, split):
    reason = backend_reason("torch-cuda")
    if reason:
        pytest.skip(f"torch-cuda backend unavailable here: {reason}")
    Z = gen.transform(split[1])
    ref = make_decoder("onnxruntime", gen).decode(Z)
    for graphs in (False, True):
        out = make_decoder("torch-cuda", gen, cuda_graphs=graphs).decode(Z)
        assert np.abs(out - ref).max() < 5e-3


def test_torch_cuda_graphs_serve_any_batch_size_from_the_graphs_recorded_up_front(gen, split):
    """A server's batches vary: sizes between the recorded ones are padded, larger ones split, and no graph is
    recorded after the backend is made (recording while a user waits costs milliseconds)."""
    reason = backend_reason("torch-cuda")
    if reason:
        pytest.skip(f"torch-cuda backend unavailable here: {reason}")
    Z = gen.transform(np.resize(split[1], (70, split[1].shape[1])))
    ref = make_decoder("onnxruntime", gen).decode(Z)
    dec = make_decoder("torch-cuda", gen, cuda_graphs=True)
    recorded = set(dec._graphs)
    assert recorded == set(dec.GRAPH_BATCHES)
    outs = {}
    for n in (1, 3, 5, 33, 64, 70):
        out = outs[n] = dec.decode(Z[:n])
        assert out.shape == (n, *ref.shape[1:])
        assert np.abs(out - ref[:n]).max() < 5e-3, n
    # each returned array is the caller's own: the graphs' static outputs are overwritten by every replay, so an array
    # that aliased one would now hold a later batch's faces (decoded from other latents: Z[::-1])
    dec.decode(Z[::-1].copy())
    for n, out in outs.items():
        assert np.abs(out - ref[:n]).max() < 5e-3, n
    assert set(dec._graphs) == recorded
    assert dec.describe()["graph_batches"] == list(dec.GRAPH_BATCHES)


# --- bad input --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numpy", "onnxruntime", "model"])
def test_bad_latents_are_refused_with_a_clear_error(gen, backend):
    decode = gen.inverse_transform if backend == "model" else make_decoder(backend, gen).decode
    z = np.zeros((2, 12), np.float32)
    z[1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        decode(z)
    with pytest.raises(ValueError, match="NaN or infinity"):
        decode(np.full((1, 12), np.inf))
    with pytest.raises(ValueError, match=r"\(batch, 12\).*\(2, 30\)"):
        decode(np.zeros((2, 30), np.float32))
    with pytest.raises(ValueError, match=r"z\[None\]"):
        decode(np.zeros(12, np.float32))
    with pytest.raises(ValueError, match="real numbers"):
        decode(np.array([["a"] * 12]))
    assert decode(np.zeros((0, 12), np.float32)).shape[0] == 0


def test_fit_refuses_bad_images():
    with pytest.raises(ValueError, match="NaN"):
        make_model("gen").fit(np.full((8, 64 * 64 * 3), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="too small"):
        make_model("gen", **TINY).fit(np.zeros((8, 4 * 4 * 3), np.float32))


# --- the command line -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory):
    """48 faces of 32 px: the gen model's default settings (30 epochs) train on it in seconds."""
    from omokage.catalog.generate import generate_catalog
    return generate_catalog(tmp_path_factory.mktemp("gen") / "catalog", count=48, seed=3, image_size=32,
                            progress=False)


def test_fit_gen_on_the_command_line(small_catalog, tmp_path):
    out = tmp_path / "models"
    result = subprocess.run([sys.executable, "-m", "omokage", "fit", str(small_catalog), "--models", "pca,gen",
                             "--components", "12", "--out", str(out)], capture_output=True, text=True, check=True)
    assert "gen:" in result.stdout and "| gen |" in result.stdout
    gen_dir = out / "gen" / "1"
    assert sorted(p.name for p in gen_dir.iterdir()) == ["config.json", ONNX_FILE, "model.safetensors"]
    _, config, gen_features = load_model_dir(gen_dir)
    _, pca_config, pca_features = load_model_dir(out / "pca" / "1")
    # its latent is the served pca model's, fitted on the same catalog with the same settings
    np.testing.assert_allclose(gen_features, pca_features, atol=1e-5)
    assert config["rmse"] < pca_config["rmse"]
    # and the server does not serve it as a feature space
    from omokage.engine import Engine
    engine = Engine.open(small_catalog, out)
    assert "gen" not in engine.algorithms


def test_fit_on_a_gpu_is_asked_for_with_device(small_catalog, tmp_path):
    """`omokage fit --device cuda` trains gen on a GPU; where there is none, or the device is not one PyTorch knows,
    it says so before fitting anything."""
    out = tmp_path / "models"

    def fit(device):
        return subprocess.run([sys.executable, "-m", "omokage", "fit", str(small_catalog), "--models", "pca,gen",
                               "--components", "12", "--out", str(out), "--device", device],
                              capture_output=True, text=True)
    bad = fit("tpu")
    assert bad.returncode != 0 and "--device 'tpu': use cpu, cuda or cuda:N" in bad.stderr, bad.stderr
    assert not out.exists()
    reason = backend_reason("torch-cuda")
    missing = fit("cuda:99")          # a GPU this machine does not have: nothing is fitted either
    assert missing.returncode != 0 and "--device cuda:99" in missing.stderr, missing.stderr
    assert (reason or "CUDA GPU(s), cuda:0 to") in missing.stderr and not out.exists(), missing.stderr
    result = fit("cuda")
    if reason:
        assert result.returncode != 0 and reason in result.stderr and "--device cpu" in result.stderr, result.stderr
        assert not out.exists()
    else:
        assert result.returncode == 0, result.stderr
        model, config, _ = load_model_dir(out / "gen" / "1")
        assert config["params"]["device"] == "cuda"
        assert make_decoder("onnxruntime", model).decode(np.zeros((1, 12), np.float32)).shape[0] == 1


def test_gpu_script_runs_without_a_gpu(tmp_path):
    """benchmarks/gpu/decoder_backends.py on this machine: the GPU backends are reported unavailable, with reasons."""
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu" / "decoder_backends.py"), "--out",
                             str(tmp_path), "--count", "24", "--size", "32", "--epochs", "1", "--seconds", "0.02"],
                            capture_output=True, text=True, check=True, cwd=REPO)
    payload = json.loads((tmp_path / "decoder_backends.json").read_text())
    measured = {r["backend"] for r in payload["latency"]}
    assert "numpy" in measured and any(b.startswith("onnxruntime") for b in measured)
    for name in ("tensorrt", "torch-cuda"):
        if backend_reason(name):
            assert name in payload["unavailable"], result.stdout
    assert (tmp_path / "decoder_backends.md").read_text().startswith("# Decoder backends")


def test_bench_generator_help():
    out = subprocess.run([sys.executable, "-m", "omokage", "bench", "generator", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "held-out" in out.lower() and "omokage bench generator --datasets generated" in out
