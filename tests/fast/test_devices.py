"""``dtype: auto``: bf16 only where the hardware computes it natively, recorded and keyed."""

import logging

import pytest
import torch

from rlaif.config import TransformersJudgeConfig, validate_pipeline
from rlaif.errors import ConfigError
from rlaif.judges import JudgeRequest
from rlaif.judges.transformers import TransformersJudge
from rlaif.models.devices import (
    Hardware,
    cpu_flags,
    cpu_has_native_bf16,
    hardware,
    pick_dtype,
    pick_training_dtype,
    resolve_dtype,
    resolved_dtypes,
)

AVX2_EPYC = Hardware("cpu", "AMD EPYC", native_bf16=False, cpu_capability="AVX2")
AMX_XEON = Hardware("cpu", "Intel Xeon", native_bf16=True, cpu_capability="AVX512")
A100 = Hardware("cuda", "A100", native_bf16=True, cpu_capability="AVX2")
V100 = Hardware("cuda", "V100", native_bf16=False, cpu_capability="AVX2")


@pytest.mark.parametrize(
    ("hw", "inference", "training"),
    [
        (AVX2_EPYC, "float32", "float32"),
        (AMX_XEON, "bfloat16", "bfloat16"),
        (A100, "bfloat16", "bfloat16"),
        (V100, "float16", "float16"),
    ],
)
def test_auto_follows_native_support(hw, inference, training):
    assert pick_dtype("auto", hw) == inference
    assert pick_training_dtype("auto", hw) == training
    assert pick_dtype("bfloat16", AVX2_EPYC) == "bfloat16"  # explicit values are kept


def test_fp16_training_on_a_cpu_is_refused():
    with pytest.raises(ConfigError, match="train.dtype"):
        pick_training_dtype("float16", AVX2_EPYC)


@pytest.mark.parametrize(
    ("flags", "machine", "native"),
    [
        ({"avx2", "fma", "avx512f"}, "x86_64", False),
        ({"avx2", "avx512_bf16"}, "x86_64", True),
        ({"avx2", "amx_bf16"}, "x86_64", True),
        ({"asimd", "bf16"}, "aarch64", True),
        ({"asimd"}, "arm64", False),
    ],
)
def test_native_bf16_from_cpu_flags(flags, machine, native):
    assert cpu_has_native_bf16(flags, machine) is native


def test_this_machine_is_read_from_its_own_flags():
    hw = hardware()
    if torch.cuda.is_available():
        pytest.skip("reads the CPU only without a GPU")
    flags = cpu_flags()
    assert hw.native_bf16 == bool({"avx512_bf16", "amx_bf16", "bf16"} & flags)
    assert hw.cpu_capability == torch.backends.cpu.get_cpu_capability()


@pytest.mark.gpu
def test_a_gpu_is_the_device_and_auto_picks_its_half_precision():
    hw = hardware()
    assert hw.device == "cuda" and hw.name == torch.cuda.get_device_name(0)
    assert pick_dtype("auto", hw) == ("bfloat16" if torch.cuda.is_bf16_supported() else "float16")


def test_explicit_bf16_on_an_emulating_cpu_warns_with_the_measured_cost(caplog):
    with caplog.at_level(logging.INFO, logger="rlaif.models.devices"):
        assert resolve_dtype("bfloat16", where="test-warn", hw=AVX2_EPYC) == "bfloat16"
        assert resolve_dtype("auto", where="test-auto", hw=AVX2_EPYC) == "float32"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "test-warn" in warnings[0].message and "slower than float32" in warnings[0].message
    assert any("test-auto: float32 (auto" in r.message for r in caplog.records)


def test_resolution_is_logged_once(caplog):
    with caplog.at_level(logging.INFO, logger="rlaif.models.devices"):
        for _ in range(3):
            resolve_dtype("auto", where="test-once", hw=AMX_XEON)
    assert sum("test-once" in r.message for r in caplog.records) == 1


def test_pipeline_dtypes_resolve_every_model(tiny_model):
    cfg = validate_pipeline(
        {
            "name": "t",
            "model": str(tiny_model),
            "judge": {"judges": [{"name": "j", "model": str(tiny_model), "dtype": "float32"}]},
        }
    )
    dtypes = resolved_dtypes(cfg)
    expected = pick_dtype("auto", hardware())
    assert dtypes == {"sample": expected, "train": expected, "judge:j": "float32"}


def test_judge_key_holds_the_dtype_it_runs_in_not_auto(tiny_model):
    """bf16 and float32 give different label probabilities, so a judgment made in one is not
    reused for the other; ``auto`` keys like the dtype it resolves to here."""
    here = pick_dtype("auto", hardware())
    other = "float32" if here == "bfloat16" else "bfloat16"

    def judge(dtype: str) -> TransformersJudge:
        return TransformersJudge(TransformersJudgeConfig(model=str(tiny_model), dtype=dtype))

    assert judge("auto").identity() == judge(here).identity()
    assert judge("auto").identity() != judge(other).identity()
    request = JudgeRequest("Name a colour.", "Blue.", "A colour is a visual property.")
    p_here = judge(here).judge([request])[0].p_first
    p_other = judge(other).judge([request])[0].p_first
    assert p_here is not None and p_other is not None
    assert p_here != p_other


def test_run_records_hardware_and_resolved_dtypes(tmp_path, tiny_model, caplog):
    from rlaif import Pipeline
    from rlaif.run.run_dir import read_manifest

    cfg = validate_pipeline(
        {
            "name": "dtypes",
            "model": str(tiny_model),
            "output_dir": str(tmp_path),
            "prompts": {"limit": 3, "eval_size": 1},
            "sample": {"backend": "transformers", "n": 1, "max_new_tokens": 2},
        }
    )
    with caplog.at_level(logging.INFO, logger="rlaif"):
        result = Pipeline(cfg).run(stages=["sample"])
    manifest = read_manifest(result.run_dir)
    expected = pick_dtype("auto", hardware())
    assert manifest["dtypes"]["sample"] == expected
    assert manifest["hardware"]["native_bf16"] == hardware().native_bf16
    said = [r.message for r in caplog.records if r.message.startswith("dtypes: ")]
    assert said == [
        f"dtypes: sample={expected}, train={expected}, judge:local={expected}"
        f" ({hardware().device} {hardware().name}, native bf16: "
        f"{hardware().native_bf16})"
    ]


def test_fp16_training_on_cpu_fails_before_any_compute(tmp_path, tiny_model):
    from rlaif import Pipeline

    if torch.cuda.is_available():
        pytest.skip("fp16 training is valid on a GPU")
    cfg = validate_pipeline(
        {
            "name": "fp16",
            "model": str(tiny_model),
            "output_dir": str(tmp_path),
            "train": {"dtype": "float16"},
        }
    )
    with pytest.raises(ConfigError, match="train.dtype"):
        Pipeline(cfg).run()
    assert not (tmp_path / "fp16").exists()
