"""`cnnlab info`: versions, hardware, the precision `--precision auto` picks here, and where data is found.

What to paste into a bug report, and how to tell which machine a figure came from."""

from __future__ import annotations

import platform

from cnnlab.commands import add_command
from cnnlab.text import to_json


def add_parser(subparsers):
    p = add_command(subparsers, "info", "Versions, CPU/GPU, native bf16, threads and where datasets are found.", [
        "cnnlab info",
        "cnnlab info --json      # the same as one JSON object",
    ], run)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def collect() -> dict:
    import numpy
    import torch

    from cnnlab import __version__, hardware
    from cnnlab.data.datasets import locate, search_roots
    from cnnlab.data.registry import DATASETS

    found = {}
    for name, dataset in DATASETS.items():
        path = locate(dataset, dataset.files["train"][0])
        found[name] = str(path.parent) if path else None
    _, cpu_reason = hardware.choose_precision("auto", "cpu")
    return {"cnnlab": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "platform": platform.platform(), **hardware.describe(),
            "devices": hardware.usable_devices(), "auto_precision_cpu": cpu_reason, "data_search_path": [str(p) for p in search_roots()],
            "datasets": found}


def run(args) -> int:
    info = collect()
    if args.json:
        print(to_json(info, indent=2))
        return 0
    rows = [
        ("cnnlab", info["cnnlab"]),
        ("python", info["python"]),
        ("torch", info["torch"]),
        ("numpy", info["numpy"]),
        ("platform", info["platform"]),
        ("CPU", info["cpu"]),
        ("CPU kernels", info["cpu_capability"]),
        ("native bf16", "yes" if info["native_bf16"] else "no"),
        ("cores / threads", f"{info['cores']} / {info['threads']} (torch)"),
        ("CUDA", ", ".join(info["cuda"]) + f" (CUDA {info['cuda_version']})" if info["cuda"] else "none"),
        ("devices", ", ".join(info["devices"]) + "  (--device)"),
        ("precision auto", info["auto_precision_cpu"].split(": ", 1)[0] + " on the CPU"
         + (", bf16 on CUDA" if info["cuda"] else "")),
        ("data search path", "\n".join(info["data_search_path"])),
    ]
    rows += [(f"  {name}", path or "not found (downloaded on first use)") for name, path in info["datasets"].items()]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        lines = str(value).splitlines() or [""]
        print(f"{key:<{width}}  {lines[0]}")
        for line in lines[1:]:
            print(f"{'':<{width}}  {line}")
    return 0
