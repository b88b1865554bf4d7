"""The public API: `import runtime` gives what a capture app needs, and the example in its docstring runs."""

import textwrap

import numpy as np

import runtime
from tests.runtime.conftest import smooth_bgr8


def test_every_public_name_is_there():
    assert set(runtime.__all__) >= {"Deblurrer", "DeblurResult", "load_bundle", "Bundle", "BackendSettings"}
    assert {"RestoreSettings", "RefineSettings"} <= set(runtime.__all__)
    assert all(hasattr(runtime, name) for name in runtime.__all__)


def test_the_docstring_example_runs(small_bundle, capsys):
    assert runtime.__doc__ is not None
    example = "\n".join(line for line in runtime.__doc__.splitlines() if line.startswith("    "))
    code = textwrap.dedent(example).replace('"runtime/bundles/demo"', repr(str(small_bundle)))
    namespace = {"frame": smooth_bgr8(48, 64)}
    exec(code, namespace)
    result = namespace["result"]
    assert isinstance(result, runtime.DeblurResult) and result.restored.dtype == np.uint8
    assert result.refinement is not None and namespace["trajectory"].shape == (25, 3)
    assert capsys.readouterr().out.startswith("backend: ")
