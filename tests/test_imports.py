"""Cheap imports: `import lossatlas` loads no heavy library, `lossatlas --help` no torch."""

import os
import subprocess
import sys

HEAVY = ("torch", "matplotlib", "xarray", "zarr", "sklearn", "phate", "umap", "gudhi", "dask")


def _modules_after(code: str) -> set:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return set(out.stdout.split())


def test_import_lossatlas_loads_no_heavy_library():
    loaded = _modules_after("import lossatlas")
    assert not [m for m in HEAVY if m in loaded]


def test_integrations_load_no_framework_until_used():
    loaded = _modules_after("import lossatlas.integrations")
    assert not [m for m in ("lightning", "pytorch_lightning", "transformers") if m in loaded]


def test_help_imports_no_torch():
    code = ("import sys\nfrom lossatlas.cli import app\nfrom typer.testing import CliRunner\n"
            "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0 and 'surface' in r.output, r.output")
    loaded = _modules_after(code)
    assert "torch" not in loaded and "numpy" not in loaded
    sub = _modules_after(code.replace("['--help']", "['surface', '--help']"))
    assert "torch" not in sub


def test_public_names_resolve():
    import lossatlas as la

    for name in ("Landscape", "plane", "line", "train", "jump_retrain", "PHATE", "StoreMismatchError", "Source",
                 "RunDir", "load_data", "pca_directions", "embed", "persistence", "total_persistence", "connect",
                 "hessian_eigenvalues", "hessian_trace", "predict", "Recorder"):
        assert getattr(la, name) is not None, name
    assert callable(la.train) and callable(la.embed) and callable(la.connect) and callable(la.predict)
    import lossatlas.training  # noqa: F401 - importing the module must not hide the function
    import lossatlas.connectivity  # noqa: F401
    import lossatlas.prediction  # noqa: F401
    assert callable(la.train) and callable(la.connect) and callable(la.predict)
