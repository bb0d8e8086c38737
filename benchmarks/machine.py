"""What a benchmark ran on, printed above its table: the same code gives different ratios on different CPUs."""

import os
import platform
from pathlib import Path

import torch


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def _build() -> str:
    """The BLAS and oneDNN (MKL-DNN) versions torch was built with, from its build configuration."""
    lines = torch.__config__.show().splitlines()
    onednn = next((line.strip(" -").split(" (")[0] for line in lines if "MKL-DNN" in line), "no oneDNN")
    blas = next((item.split("=")[1] for line in lines for item in line.split(", ") if "BLAS_INFO=" in item), "?")
    return f"BLAS {blas}, {onednn}"


def describe(threads: int) -> str:
    """CPU model, cores, load, torch build and its BLAS and oneDNN."""
    return (
        f"CPU: {cpu_model()}, {os.cpu_count()} cores, load average {os.getloadavg()}\n"
        f"torch {torch.__version__} ({_build()}), {threads} torch threads"
    )
