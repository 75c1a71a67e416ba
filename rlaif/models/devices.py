"""Which number format each model runs in: ``dtype: auto`` resolved for the hardware at hand.

bfloat16 halves memory and is the fast path on GPUs and on CPUs with native bf16 units
(AVX512-BF16, AMX, Arm BF16). A CPU without them emulates it: there a bf16 matrix product
runs tens of times slower than float32 (about 60x on an AVX2-only AMD EPYC), so ``auto``
takes float32 on such a CPU and an explicit ``bfloat16`` gets a warning with the cost
measured on this machine.
"""

from __future__ import annotations

import functools
import logging
import platform
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16", "float16")
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""x86 flags of native bf16 arithmetic in /proc/cpuinfo (Arm's is ``bf16``)."""


@dataclass(frozen=True)
class Hardware:
    """What decides ``auto``: the device models run on and whether it computes bf16 natively."""

    device: str
    """``cuda`` or ``cpu``."""
    name: str
    native_bf16: bool
    cpu_capability: str
    """torch's view of the CPU's vector units (``AVX2``, ``AVX512``, ...)."""

    def as_dict(self) -> dict:
        return asdict(self)


@functools.cache
def hardware() -> Hardware:
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    if torch.cuda.is_available():
        return Hardware(
            device="cuda",
            name=torch.cuda.get_device_name(0),
            native_bf16=torch.cuda.is_bf16_supported(),
            cpu_capability=capability,
        )
    flags = cpu_flags()
    return Hardware(
        device="cpu",
        name=_cpu_name(),
        native_bf16=cpu_has_native_bf16(flags, platform.machine()),
        cpu_capability=capability,
    )


def vllm_enforce_eager() -> bool:
    """Whether an in-process vLLM engine skips compilation: on CPU compiling takes minutes at
    start (a server for the embedded model: 246 s against 69 s eager, here) and there are no
    CUDA graphs to win back; on a GPU the graphs speed up every decoding step."""
    return hardware().device != "cuda"


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``, macOS ``sysctl``); empty if unknown."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return _macos_flags()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def _macos_flags() -> set[str]:
    try:
        out = subprocess.run(
            ["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True
        ).stdout
    except OSError:
        return set()
    return {"bf16"} if out.strip() == "1" else set()


def cpu_has_native_bf16(flags: set[str], machine: str) -> bool:
    """True when the CPU computes bf16 in hardware rather than emulating it in float32."""
    if machine.lower() in ("arm64", "aarch64"):
        return "bf16" in flags
    return any(flag in flags for flag in _CPU_BF16_FLAGS)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def pick_dtype(requested: str, hw: Hardware) -> str:
    """``auto`` becomes bf16 where the device computes it natively; else fp16 on a GPU
    without bf16 (pre-Ampere), float32 on a CPU. Any other value is kept as asked."""
    if requested != "auto":
        return requested
    if hw.native_bf16:
        return "bfloat16"
    return "float16" if hw.device == "cuda" else "float32"


def pick_training_dtype(requested: str, hw: Hardware) -> str:
    """The mixed-precision compute dtype for training (weights and optimizer stay float32).
    ``auto`` follows :func:`pick_dtype`, except that fp16 training needs loss scaling that
    only a GPU has, so a CPU trains in float32 when it lacks native bf16."""
    chosen = pick_dtype(requested, hw)
    if chosen == "float16" and hw.device != "cuda":
        from rlaif.errors import ConfigError

        raise ConfigError("train.dtype: float16 mixed precision needs a CUDA GPU; use auto")
    return chosen


_reported: set[tuple[str, str, str]] = set()


def resolve_dtype(
    requested: str, *, where: str, training: bool = False, hw: Hardware | None = None
) -> str:
    """The concrete dtype for ``requested`` on this machine (or ``hw``), logged once per
    ``where``; an explicit bfloat16 on a CPU that emulates it warns with the slowdown measured
    here."""
    hw = hw or hardware()
    chosen = (pick_training_dtype if training else pick_dtype)(requested, hw)
    if (where, requested, chosen) not in _reported:
        _reported.add((where, requested, chosen))
        how = "auto" if requested == "auto" else "as configured"
        log.info("%s: %s (%s; %s, native bf16: %s)", where, chosen, how, hw.name, hw.native_bf16)
        if chosen == "bfloat16" and hw.device == "cpu" and not hw.native_bf16:
            log.warning(
                "%s: dtype bfloat16 on a CPU without native bf16 (%s): bf16 matrix products "
                "run %.0fx slower than float32 here (measured); use dtype: auto or float32",
                where,
                hw.name,
                bf16_slowdown(),
            )
    return chosen


@functools.cache
def bf16_slowdown(size: int = 256, repeats: int = 5) -> float:
    """Time of a bf16 matrix product over a float32 one of the same size, on this CPU."""
    import torch

    def best(dtype: torch.dtype) -> float:
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        a @ b
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        return min(times)

    return best(torch.bfloat16) / max(best(torch.float32), 1e-9)


def configured_dtypes(config) -> dict[str, str]:
    """Every place a model runs in a pipeline, and the dtype its config asks for."""
    out = {"sample": config.sample.dtype, "train": config.train.dtype}
    for spec in config.judge.judges:
        dtype = getattr(spec, "dtype", None)
        if dtype is not None:
            out[f"judge:{spec.name}"] = dtype
    return out


def resolved_dtypes(config) -> dict[str, str]:
    """Every place a model runs in a pipeline, and the dtype it runs in here (manifest)."""
    return {
        where: (pick_training_dtype if where == "train" else pick_dtype)(dtype, hardware())
        for where, dtype in configured_dtypes(config).items()
    }


def trainer_precision(dtype: str) -> dict[str, bool]:
    """``bf16``/``fp16`` flags of a TRL/transformers ``TrainingArguments`` for ``dtype``."""
    resolved = resolve_dtype(dtype, where="training", training=True)
    return {"bf16": resolved == "bfloat16", "fp16": resolved == "float16"}


def accelerate_precision(dtype: str) -> str:
    """``Accelerator(mixed_precision=...)`` for ``dtype``: ``bf16``, ``fp16`` or ``no``."""
    resolved = resolve_dtype(dtype, where="training", training=True)
    return {"bfloat16": "bf16", "float16": "fp16"}.get(resolved, "no")
