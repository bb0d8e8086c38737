"""Device and dtype choice: the GPU when there is one, and the fastest dtype it computes natively."""

import torch

from service.inference.model_dir import ModelLoadError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(setting: str) -> torch.device:
    """``auto`` is cuda when available, else cpu; an explicit cuda device must exist."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(f"HELDOUT_DEVICE={setting} but torch sees no CUDA device")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ModelLoadError(f"HELDOUT_DEVICE={setting} but only {torch.cuda.device_count()} CUDA device(s) exist")
    return device


def _native_bf16(device: torch.device) -> bool:
    # Without including_emulation=False, pre-Ampere GPUs report bf16 support they only emulate slowly.
    with torch.cuda.device(device):
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))


def resolve_dtype(setting: str, device: torch.device) -> torch.dtype:
    """``auto`` is bf16 on GPUs that compute it natively, fp16 on other GPUs, fp32 on CPU."""
    if setting != "auto":
        return DTYPES[setting]
    if device.type == "cuda":
        return torch.bfloat16 if _native_bf16(device) else torch.float16
    return torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
