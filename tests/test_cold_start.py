"""Cold start of one prediction: what a fresh process imports and builds, and what a bundle from
training carries. No timings here: ``benchmarks/predict_latency.py`` measures them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HEAVY = ("torch", "timm", "onnxruntime", "numba", "pandas", "scipy", "sklearn", "pytorch_grad_cam")
PARABOLIC = Path(__file__).resolve().parents[1] / "src" / "osteolens" / "transforms" / "parabolic.py"


def _fresh(code: str, *args: object, env: dict[str, str] | None = None) -> dict:
    """Run ``code`` in a new interpreter; it prints one JSON object on its last stdout line."""
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [["--help"], ["predict", "--help"], ["--version"]])
def test_cli_help_imports_no_heavy_package(argv):
    code = f"""
import json, sys
sys.argv = ["osteolens", *{argv!r}]
import osteolens.cli.main as cli
status = 0
try:
    cli.main()
except SystemExit as exc:
    status = exc.code
print()
print(json.dumps({{"status": status, "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
"""
    assert _fresh(code) == {"status": 0, "heavy": []}


def test_packages_import_their_names_on_first_use():
    code = f"""
import json, sys
import osteolens.evaluation, osteolens.evaluation.metrics, osteolens.explain, osteolens.inference
heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
from osteolens.evaluation.evaluate import image_names  # the submodule named like the function
from osteolens.evaluation import compare, evaluate
from osteolens.explain import colorize
print(json.dumps({{"heavy": heavy, "evaluate": [type(evaluate).__name__, evaluate.__module__],
                  "compare": type(compare).__name__, "same": osteolens.evaluation.evaluate is evaluate,
                  "colorize": colorize.__module__, "all": "Predictor" in osteolens.inference.__all__,
                  "dir": "delong_auc" in dir(osteolens.evaluation)}}))
"""
    assert _fresh(code) == {"heavy": [], "evaluate": ["function", "osteolens.evaluation.evaluate"],
                            "compare": "function", "same": True, "colorize": "osteolens.explain.render",
                            "all": True, "dir": True}


def test_unknown_lazy_name_is_an_attribute_error():
    import osteolens.explain

    with pytest.raises(AttributeError, match="osteolens.explain.*no_such_name"):
        osteolens.explain.no_such_name  # noqa: B018


@pytest.fixture
def tiny_bundle(tmp_path):
    """``tiny_bundle(onnx: bool, cam: bool = False) -> (bundle, png)``: a simple_cnn bundle (with
    model.onnx, and its Grad-CAM graph cam.onnx) whose preprocessing runs the numba rolling ball,
    and a 60 x 50 radiograph-like PNG."""
    import torch

    from osteolens.inference import export_onnx, write_bundle
    from osteolens.io import write_png
    from osteolens.models import create_model

    rows, cols = np.mgrid[0:60, 0:50]
    png = write_png((0.2 + 0.6 * (np.sin(rows / 3.0) * np.cos(cols / 4.0)) ** 2).astype(np.float32),
                    tmp_path / "knee.png", bits=16)
    steps = [{"name": "percentile_normalise", "params": {}}, {"name": "rolling_ball", "params": {"radius": 12}},
             {"name": "resize", "params": {"size": 32}}]

    def _make(onnx: bool, cam: bool = False) -> tuple[Path, Path]:
        from osteolens.inference import add_cam_onnx
        from osteolens.inference.cam_graph import export_cam_onnx

        torch.manual_seed(0)
        models = [create_model("simple_cnn", "binary", 1, conv_layers=2, filters=4, dense_units=8).eval()]
        path = write_bundle(tmp_path / f"bundle_{onnx}_{cam}", models=models, preprocessing=steps,
                            input_size=(32, 32), task="binary", labels=["normal", "osteoporosis"], target="label",
                            threshold=0.5, onnx_model=export_onnx(models, (32, 32)) if onnx else None)
        if cam:
            add_cam_onnx(path, export_cam_onnx(models, (32, 32)))
        return path, png

    return _make


PREDICT_THEN_EXPLAIN = """
import json, sys
from osteolens.inference import Predictor
predictor = Predictor(sys.argv[1])
plain = predictor.predict(sys.argv[2])
predictor.warm_up(cam=False)
state = {"grad_cam": "pytorch_grad_cam" in sys.modules, "exported": "torch.onnx" in sys.modules,
         "backend": predictor.model_info["backend"]}
explained = predictor.predict(sys.argv[2], cam=True)
state.update(grad_cam_after="pytorch_grad_cam" in sys.modules, same=explained.probability == plain.probability,
             heatmap=list(explained.heatmap.shape))
print(json.dumps(state))
"""


@pytest.mark.slow
@pytest.mark.parametrize("onnx", [True, False])
def test_predictor_builds_grad_cam_only_when_asked_and_exports_only_without_onnx(tiny_bundle, onnx):
    bundle, png = tiny_bundle(onnx)
    state = _fresh(PREDICT_THEN_EXPLAIN, bundle, png)
    # Neither a prediction nor a warm-up without cam loads pytorch-grad-cam; the first cam does.
    assert state["grad_cam"] is False and state["grad_cam_after"] is True
    # A bundle carrying model.onnx is not exported again at load (torch.onnx never imported).
    assert state["exported"] is (not onnx) and state["backend"] == "onnx"
    assert state["same"] is True and state["heatmap"] == [60, 50]


def test_predict_with_grad_cam_from_the_graphs_imports_no_torch(tiny_bundle, tmp_path):
    """A one-image ``osteolens predict --cam`` on a bundle with model.onnx and cam.onnx runs in
    ONNX Runtime alone, and writes the same answer and heat map as the torch backend."""
    bundle, png = tiny_bundle(onnx=True, cam=True)
    code = f"""
import json, sys
sys.argv = ["osteolens", "predict", sys.argv[1], "--model", sys.argv[2], "--cam", "--out", sys.argv[3]]
import osteolens.cli.main as cli
try:
    cli.main()
except SystemExit as exc:
    assert not exc.code, exc.code
print()
print(json.dumps({{"heavy": sorted(m for m in {HEAVY!r} if m in sys.modules)}}))
"""
    state = _fresh(code, png, bundle, tmp_path / "fast")
    assert not {"torch", "timm", "pytorch_grad_cam"} & set(state["heavy"]), state["heavy"]
    from osteolens.inference import Predictor

    record = json.loads((tmp_path / "fast" / "knee.json").read_text())
    eager = Predictor(bundle, backend="torch").predict(png, cam=True)
    assert record["probability"] == pytest.approx(eager.probability, abs=1e-5)
    from PIL import Image

    heat = np.asarray(Image.open(tmp_path / "fast" / "knee_heatmap.png"))
    assert heat.shape[:2] == (60, 50)


@pytest.mark.slow
def test_bundle_written_by_training_carries_a_checked_onnx_model(tmp_path):
    from osteolens.inference import Predictor, load_bundle
    from osteolens.training import TrainConfig, run_training
    from tests.training.conftest import make_cohort

    manifest = make_cohort(tmp_path / "cohort", patients=12, images_per_patient=1)
    config = TrainConfig.from_dict({
        "manifest": str(manifest), "target": "label", "task": "binary", "input_size": [32, 32],
        "model": {"name": "simple_cnn", "params": {"conv_layers": 2, "filters": 4, "dense_units": 8}},
        "augmentation": "none", "folds": 2, "epochs": 1, "batch_size": 8, "warmup_epochs": 0, "report": False,
        "out": str(tmp_path / "runs"), "seed": 0,
    })
    run = run_training(config, quiet=True)
    bundle = load_bundle(run.bundle)
    assert bundle.onnx_model is not None and bundle.manifest["onnx"] == "model.onnx"
    assert bundle.cam_onnx is not None and bundle.manifest["cam_onnx_parity"]["max_abs_map_difference"] <= 1e-3
    image = tmp_path / "cohort" / "img" / "P001_0.png"
    onnx = Predictor(bundle, backend="onnx").predict(image)
    eager = Predictor(bundle, backend="torch").predict(image)
    assert onnx.probability == pytest.approx(eager.probability, abs=1e-5) and onnx.label == eager.label


@pytest.mark.slow
def test_numba_kernel_compiles_uncached_where_no_cache_folder_is_writable(tmp_path):
    # Every place numba may cache in is blocked: NUMBA_CACHE_DIR and the user cache folder lie
    # under a plain file, and the module's own __pycache__ is a file.
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    module_dir = tmp_path / "module"
    module_dir.mkdir()
    shutil.copy(PARABOLIC, module_dir / "parabolic_copy.py")
    (module_dir / "__pycache__").write_text("")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(blocker / "home"), "NUMBA_CACHE_DIR": str(blocker / "numba"),
           "XDG_CACHE_HOME": str(blocker / "cache"), "PYTHONDONTWRITEBYTECODE": "1"}
    code = """
import importlib.util, json, sys
import numpy as np
spec = importlib.util.spec_from_file_location("parabolic_copy", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
values = np.array([[0.0, 4.0, 1.0, 9.0, 0.5]], np.float32)
print(json.dumps({"cache": module._erode_lines.stats.cache_path, "out": module.erode_lines(values, 2.0)[0].tolist()}))
"""
    state = _fresh(code, module_dir / "parabolic_copy.py", env=env)
    assert state["cache"] is None
    # By hand: out[p] = min_q values[q] + (p - q)^2 / (2 * 2).
    values = np.array([0.0, 4.0, 1.0, 9.0, 0.5])
    expected = [min(values[q] + (p - q) ** 2 / 4.0 for q in range(5)) for p in range(5)]
    assert state["out"] == pytest.approx(expected, abs=1e-5)


def test_numba_kernel_is_cached_on_disk():
    from osteolens.transforms.parabolic import _erode_lines

    assert _erode_lines.stats.cache_path is not None
