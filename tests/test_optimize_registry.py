"""The variants are a registry: each declares its config, what it needs from the variants
before it, and when it applies; a target file's list and settings are checked against
those declarations when it loads, every problem at once, by key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlpack.errors import MlpackError
from mlpack.model.info import inspect_model
from mlpack.optimize.variants import REGISTRY, Int8Config, Outcome, Variant, VariantConfig, order_problems
from mlpack.targets import load_target, load_target_file

from .models import linear_model
from .optimize_models import embedding_model, optimize, two_layer_data, two_layer_model, with_variants

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ('"stored-int8", "dynamic-int8", "dynamic-int8-per-tensor", "smooth-int8", "static-int8", "compact-int8", '
           '"mixed-int8", "pruned", "pruned-int8"')


def target_file(tmp_path: Path, variants: str | None = None, extra: str = "", **replace: str) -> Path:
    """targets/x86-cpu.toml with its variants list (and any other text) replaced."""
    text = (REPO / "targets/x86-cpu.toml").read_text()
    if variants is not None:
        text = text.replace(f"variants = [{SHIPPED}]", f"variants = [{variants}]")
    for old, new in replace.items():
        text = text.replace(old, new)
    path = tmp_path / "x86-cpu.toml"
    path.write_text(text.replace("[serving]", extra + "\n[serving]"))
    return path


def load_error(path: Path) -> str:
    with pytest.raises(MlpackError) as caught:
        load_target_file(path)
    message = caught.value.one_line()
    assert message.startswith(f"invalid target file {path}: ") and "\n" not in message
    return message


# ---- the declarations --------------------------------------------------------------------


def test_every_variant_declares_a_config_and_only_registered_dependencies() -> None:
    assert set(REGISTRY) == {"dynamic-int8", "dynamic-int8-per-tensor", "smooth-int8", "static-int8", "compact-int8",
                             "mixed-int8", "fp16", "pruned", "pruned-int8", "stored-int8"}
    for name, variant in REGISTRY.items():
        assert variant.name == name and issubclass(variant, Variant)
        assert issubclass(variant.Config, VariantConfig)
        assert set(variant.needs_one_of) <= set(variant.reads) <= set(REGISTRY) - {name}
        variant.Config()  # every setting has a default
    assert REGISTRY["mixed-int8"].needs_one_of == ("static-int8", "smooth-int8", "dynamic-int8")
    assert REGISTRY["compact-int8"].reads == ("smooth-int8",)
    assert REGISTRY["pruned-int8"].reads == ("pruned",)


def test_the_shipped_targets_list_their_variants_in_a_valid_order() -> None:
    for name in ("x86-cpu", "arm-edge", "aws-lambda", "cuda-gpu"):
        assert order_problems(load_target(name).optimize.variants) == []


def test_checking_a_target_file_does_not_load_onnx() -> None:
    code = ("import sys; from mlpack.targets import known_targets; known_targets(); "
            "print(sorted(m for m in ('onnx', 'onnxruntime') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# ---- the order in a target file ------------------------------------------------------------


def test_mixed_precision_listed_before_any_int8_variant_is_one_error_with_the_others(tmp_path: Path) -> None:
    path = target_file(tmp_path, '"mixed-int8", "dynamic-int8"', **{'policy = "fastest"': 'policy = "cheapest"'})
    message = load_error(path)
    assert ("optimize.variants: mixed-int8 needs static-int8, smooth-int8 or dynamic-int8 listed before it "
            "(mixed-int8 keeps layers of an earlier int8 variant in float") in message
    assert "optimize.policy" in message  # reported together, not one per run


def test_a_variant_listed_after_one_that_reads_its_outcome_is_an_error(tmp_path: Path) -> None:
    message = load_error(target_file(tmp_path, '"dynamic-int8", "compact-int8", "smooth-int8"'))
    assert "optimize.variants: compact-int8 reads the outcome of smooth-int8, so list it before compact-int8" in message


def test_unknown_and_repeated_variants_are_named(tmp_path: Path) -> None:
    message = load_error(target_file(tmp_path, '"dynamic-int8", "int3", "dynamic-int8"'))
    assert ("unknown variant 'int3' (known: compact-int8, dynamic-int8, dynamic-int8-per-tensor, fp16, mixed-int8, "
            "pruned, pruned-int8, smooth-int8, static-int8, stored-int8)") in message
    assert "dynamic-int8 is listed 2 times" in message


# ---- each variant's config -------------------------------------------------------------------


def test_a_variant_is_configured_by_its_table_and_starts_from_the_targets_weight_type(tmp_path: Path) -> None:
    path = target_file(tmp_path, extra='[optimize.config.smooth-int8]\nstrengths = [0.5]\n',
                       **{'weight_type = "qint8"': 'weight_type = "quint8"'})
    opt = load_target_file(path).optimize
    assert opt.variant_config("smooth-int8").strengths == (0.5,)
    assert opt.variant_config("smooth-int8").weight_type == "quint8"
    assert opt.variant_config("dynamic-int8") == Int8Config(weight_type="quint8")
    assert opt.variant_config("compact-int8").block_size == 32


def test_bad_variant_settings_are_named_by_key_with_the_other_errors(tmp_path: Path) -> None:
    extra = ('[optimize.config.smooth-int8]\nstrengths = [1.5]\nalpha = 1\n'
             '[optimize.config.fp16]\nkeep_io = false\n')
    message = load_error(target_file(tmp_path, extra=extra, **{'oci = "linux/amd64"': 'oci = "linux/s390x"'}))
    assert "optimize.config: smooth-int8.strengths.0: Input should be less than 1" in message
    assert "smooth-int8.alpha: Extra inputs are not permitted" in message
    assert "fp16: configured but not in optimize.variants" in message
    assert "platform.oci" in message


def test_the_configured_strengths_are_the_ones_tried(tmp_path: Path) -> None:
    target = with_variants("x86-cpu", "dynamic-int8", "smooth-int8")
    target = target.model_copy(update={"optimize": target.optimize.model_copy(update={"config": {
        "smooth-int8": {"strengths": [0.3]}}})})
    lines: list[str] = []
    result = optimize(inspect_model(two_layer_model(tmp_path / "m.onnx")), target, tmp_path / "work",
                      data_path=two_layer_data(tmp_path / "d.npz"), log=lines.append)
    smooth = next(c for c in result.candidates if c.name == "smooth-int8")
    assert "strength 0.3 chosen from 0.3 " in smooth.recipe
    assert [line.split(":")[0] for line in lines if "at strength" in line] == ["smooth-int8 at strength 0.3"]


# ---- what a variant reads from the ones before it ------------------------------------------------


@pytest.mark.parametrize(("variants", "other_weights"), [
    (("dynamic-int8", "smooth-int8", "compact-int8"), "as smooth-int8"),
    (("dynamic-int8", "compact-int8"), "as dynamic-int8"),
])
def test_compact_quantizes_the_other_weights_as_smooth_int8_did_when_it_ran_before(
        tmp_path: Path, variants: tuple[str, ...], other_weights: str) -> None:
    ids = np.random.default_rng(0).integers(0, 2048, size=(64, 12)).astype(np.int64)
    np.savez(tmp_path / "d.npz", ids=ids)
    result = optimize(inspect_model(embedding_model(tmp_path / "emb.onnx")), with_variants("aws-lambda", *variants),
                      tmp_path / "work", data_path=tmp_path / "d.npz")
    if "smooth-int8" in variants:
        assert next(c for c in result.candidates if c.name == "smooth-int8").passed
    compact = next(c for c in result.candidates if c.name == "compact-int8")
    assert compact.recipe.endswith(f"other weights {other_weights}")


def test_mixed_precision_without_an_int8_variant_made_before_it_says_so(tmp_path: Path) -> None:
    # static-int8 does not apply to a model without convolutions, so mixed-int8 has nothing to start from.
    result = optimize(inspect_model(two_layer_model(tmp_path / "m.onnx", outliers=("first",))),
                      with_variants("x86-cpu", "static-int8", "mixed-int8"), tmp_path / "work",
                      data_path=two_layer_data(tmp_path / "d.npz"))
    assert dict(result.skipped)["mixed-int8"] == (
        "needs an int8 variant to start from, and none of static-int8, smooth-int8, dynamic-int8 was made")


class _Nosy(Variant):
    """Reads an outcome it does not declare."""

    name = "nosy"

    def make(self, run) -> Outcome:
        run.earlier("dynamic-int8")
        return Outcome(skipped="unreachable")


def test_a_variant_sees_only_the_outcomes_it_declares(tmp_path: Path) -> None:
    from mlpack.optimize.pipeline import make_candidates

    run = make_candidates(inspect_model(linear_model(tmp_path / "m.onnx")), with_variants("x86-cpu", "dynamic-int8"),
                          tmp_path / "work")
    run.make_variants([_Nosy(VariantConfig())])
    assert dict(run.skipped)["nosy"] == ("the recipe failed on this model: nosy reads dynamic-int8's outcome "
                                         "without declaring it in `reads`")


def test_a_manifests_snapshot_of_its_target_is_read_as_data_not_against_this_installation(tmp_path: Path) -> None:
    import tomllib

    from mlpack.targets import Target

    raw = tomllib.loads(target_file(tmp_path, '"int3", "mixed-int8"', extra='[optimize.config.int3]\nbits = 3\n')
                        .read_text())
    assert Target.model_validate(raw, context={"snapshot": True}).optimize.variants == ["int3", "mixed-int8"]
    with pytest.raises(ValueError, match="unknown variant 'int3'"):
        Target.model_validate(raw)
