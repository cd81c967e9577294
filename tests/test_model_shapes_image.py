"""A text pipeline (StringNormalizer, rewritten to C.UTF-8) runs inside the slim,
shell-less x86-cpu image, which holds only what serving needs: glibc's C.UTF-8 among it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlpack.build import BuildRequest, build
from mlpack.cli import app
from mlpack.progress import Progress

from . import shape_models as shapes
from .image_support import buildah, requires_image_tools, run_python
from .manifests import read_json
from .standin import ensure_standin

pytestmark = [pytest.mark.slow, requires_image_tools]

# Inside the image: the artifact's runtime opens the session (the locale is built at load)
# and answers the sentences, as the Bento service would.
PREDICT = """
import json, sys
from pathlib import Path
src = Path("/opt/mlpack/bento/src")
sys.path.insert(0, str(src))
from mlpack_runtime import ServedModel
model = ServedModel(src)
print(json.dumps(model.predict({"text": [[s] for s in json.loads(sys.argv[1])]})))
"""


def test_a_text_pipeline_answers_inside_the_x86_image(tmp_path: Path, short_timing) -> None:
    model, pipe = shapes.text_classifier(tmp_path / "text.onnx")
    result = build(BuildRequest(model=model, target="x86-cpu", out=tmp_path / "out"), Progress(quiet=True))
    image = CliRunner().invoke(app, ["image", str(result.path), "--builder", "buildah",
                                     "--base-image", ensure_standin("amd64"), "-q"])
    assert image.exit_code == 0, image.output
    ref = read_json(result.path)["image"]["local"]
    try:
        answer = json.loads(run_python(ref, PREDICT, json.dumps(shapes.PROBE_SENTENCES)))
    finally:
        buildah("rmi", "-f", read_json(result.path)["image"]["id"], check=False)
    assert answer["output_label"] == pipe.predict(shapes.PROBE_SENTENCES).tolist()
