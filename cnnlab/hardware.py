"""What this machine computes with — CPU model, SIMD level, native bf16, GPUs — and the precision chosen from it.

Every figure cnnlab prints or records can then be traced to its hardware (`cnnlab info`, the run's header line,
`_meta` in config.json).

Why precision depends on the CPU: bf16 autocast halves the memory traffic of every activation, and where the CPU
multiplies bf16 natively (x86 AVX512-BF16 or AMX, Arm's BF16 extension) oneDNN's bf16 kernels are faster than
fp32 (1.2-1.9x for the segmentation U-Nets on 2 Zen 5 cores). Elsewhere bf16 is emulated by conversions to fp32
and is many times slower (0.08-0.11x on Zen 3). So `--precision auto` is bf16 on CUDA and on CPUs with native
bf16, fp32 everywhere else.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

# CPU feature flags (as /proc/cpuinfo spells them) that mean bf16 is computed natively.
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
# oneDNN's instruction-set levels below its first one with bf16 arithmetic (AVX512_CORE_BF16): capping oneDNN
# there with ONEDNN_MAX_CPU_ISA (as the test suite does) leaves bf16 to emulation, whatever the CPU has.
ONEDNN_ISAS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (Linux); empty elsewhere."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return fields
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    return fields


def cpu_model() -> str:
    """The CPU's name, e.g. "AMD EPYC 7B13" (Linux, macOS), or the best the platform tells. On x86 Linux the family
    and model numbers follow: virtual machines often show only "AMD EPYC", and those numbers tell the generation."""
    info = _cpuinfo()
    name = info.get("model name") or info.get("hardware") or info.get("cpu model")
    if name and "cpu family" in info:
        name += f" (family {info['cpu family']}, model {info.get('model', '?')})"
    if not name and platform.system() == "Darwin":
        import subprocess

        try:
            name = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=2).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            name = ""
    return name or platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags() -> set[str]:
    info = _cpuinfo()
    return set((info.get("flags") or info.get("features") or "").split())


def cpu_capability() -> str:
    """The SIMD level PyTorch's own kernels use here ("AVX512", "AVX2", "DEFAULT", ...); ATEN_CPU_CAPABILITY
    lowers it."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively *and* oneDNN may use it (ONEDNN_MAX_CPU_ISA can forbid it)."""
    import torch

    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in ONEDNN_ISAS_WITHOUT_BF16:
        return False
    return bool(cpu_flags() & set(BF16_FLAGS)) and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def choose_precision(requested: str, device_type: str) -> tuple[bool, str]:
    """(bf16 autocast or not, why) for a `--precision` setting on a device type ("cpu", "cuda", "mps")."""
    if requested == "fp32":
        return False, "fp32, as asked"
    if device_type == "cuda":
        import torch

        if torch.cuda.is_bf16_supported():
            return True, "bf16 autocast" + (", as asked" if requested == "bf16" else ": auto, CUDA")
        if requested == "bf16":
            return True, "bf16 autocast, emulated by this GPU: --precision fp32 is faster here"
        return False, "fp32: auto, this GPU has no bf16"
    if device_type == "cpu":
        if native_bf16():
            return True, "bf16 autocast" + (", as asked" if requested == "bf16" else ": auto, native bf16 CPU")
        if requested == "bf16":
            return True, "bf16 autocast, emulated by this CPU: --precision fp32 is faster here"
        return False, "fp32: auto, no native bf16 on this CPU"
    if requested == "bf16":
        return True, "bf16 autocast, as asked"
    return False, f"fp32: auto, {device_type}"


def usable_devices() -> list[str]:
    """The `--device` values that work here: the CPU, each CUDA GPU, Apple's GPU (MPS)."""
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def describe() -> dict:
    """Versions and hardware, for `cnnlab info` and a run's `_meta`."""
    import torch

    cuda = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] \
        if torch.cuda.is_available() else []
    return {"cpu": cpu_model(), "cpu_capability": cpu_capability(), "native_bf16": native_bf16(),
            "cores": os.cpu_count(), "threads": torch.get_num_threads(), "cuda": cuda,
            "cuda_version": torch.version.cuda if cuda else None}


def busy_note(threads: int) -> str | None:
    """One line for a training header when other programs already keep this machine's cores busy (load average
    above the cores): threads that wait for a core wait for each other at every step, so that fewer of them can
    train several times faster. None on a quiet machine, with one thread, or where there is no load average."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if threads <= 1 or load <= cores:
        return None
    return (f"this machine is busy (load average {load:.1f} on {cores} cores): {threads} threads wait for each "
            f"other; --threads 1 can train faster here")
