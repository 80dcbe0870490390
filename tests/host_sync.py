"""A recorder of what would make the host wait for a GPU, usable on the CPU (issue 18's sync-free step).

On CUDA the host waits for the GPU when code reads a tensor's value (``.item()``, ``float()``, ``int()``,
``bool()``, ``.tolist()``), copies device memory to the host (``.cpu()``, ``.numpy()``, ``.to("cpu")``),
sizes a tensor by its data (``nonzero``, boolean masks, ``masked_select``, ``unique``), or makes a
blocking copy of host data into a device tensor (``torch.tensor(..., device=...)``). On the CPU all of
these are free and ``torch.cuda.set_sync_debug_mode`` sees nothing, so the recorder watches the calls:

* a ``TorchFunctionMode`` sees the Python-level conversions, which on a CPU tensor never reach the
  dispatcher (``.numpy()`` or ``.cpu()`` of a CPU tensor dispatches no aten op at all);
* a ``TorchDispatchMode`` sees the aten ops: ``_local_scalar_dense`` (every scalar read), ``nonzero`` and
  the other data-dependent shapes, and cross-device copies to the host (these only occur with a GPU).

What the test means by a sync is therefore "what would be a device-to-host wait on CUDA", not "what
touches host memory on the CPU". Two things touch host memory by design and are exempt:

* the numba renderer, ``kernels/cpu.py``: on the CPU it *is* the device, and on CUDA the Triton renderer
  replaces it (whose binning has its own sync test in ``tests/kernels/test_triton.py``);
* Triton's interpreter, which runs those kernels in host memory on the CPU;
* ``torch.optim``'s reads of Adam's step counter (``_get_value``) and its creation with ``device="cpu"``:
  torch keeps that counter on the host unless the optimiser is capturable or fused, so on CUDA too it is
  a host scalar, not a transfer.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
_EXEMPT_FILES = (str(ROOT / "kernels" / "cpu.py"),)
# Triton's interpreter (TRITON_INTERPRET=1, the kernel tests on the CPU) runs the kernels in host memory:
# its copies are the emulated device's own memory traffic, which on a GPU never involves the host.
_EXEMPT_SUFFIXES = ("triton/runtime/interpreter.py",)
_EXEMPT_FUNCTIONS = {("torch/optim/optimizer.py", "_get_value")}  # Adam's host step counter

_READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.cpu, torch.Tensor.__array__,
          torch.Tensor.__float__, torch.Tensor.__int__, torch.Tensor.__bool__, torch.Tensor.__index__}
_FACTORIES = {torch.tensor, torch.as_tensor}
_aten = torch.ops.aten
_DATA_SHAPED = {_aten._local_scalar_dense.default, _aten.nonzero.default, _aten.masked_select.default,
                _aten._unique2.default, _aten.unique_dim.default, _aten.unique_consecutive.default,
                _aten.repeat_interleave.Tensor, _aten.is_nonzero.default, _aten.equal.default}


@dataclass(frozen=True)
class Sync:
    what: str
    stack: tuple[tuple[str, str, int], ...]  # (file, function, line) of this project's frames, innermost first

    def within(self, file: str, function: str) -> bool:  # file: a path relative to the repository
        return any(f == file and fn == function for f, fn, _ in self.stack)

    def __str__(self) -> str:
        return f"{self.what} at " + " < ".join(f"{f}:{line} {fn}" for f, fn, line in self.stack[:4])


class _Noting:  # a mode that reports to ``note``
    def __init__(self, note: Callable[[str], None]):
        super().__init__()
        self.note = note


class _Functions(_Noting, TorchFunctionMode):

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _READS:
            self.note(f"Tensor.{func.__name__}")
        elif func in _FACTORIES and _to_device(args, kwargs):
            self.note(f"torch.{func.__name__}(host data, device=...)")
        elif func is torch.Tensor.to and any(_is_device(a) for a in (*args[1:], kwargs.get("device"))):
            self.note("Tensor.to(device)")
        return func(*args, **kwargs)


class _Dispatch(_Noting, TorchDispatchMode):

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _DATA_SHAPED:
            self.note(f"aten.{func.overloadpacket.__name__}")
        elif func is _aten.index.Tensor and any(i is not None and i.dtype in (torch.bool, torch.uint8)
                                                for i in args[1]):
            self.note("aten.index with a boolean mask")
        elif func in (_aten._to_copy.default, _aten.copy_.default) and _to_host(func, args, kwargs):
            self.note(f"aten.{func.overloadpacket.__name__} device to host")
        return func(*args, **kwargs)


def _in_project(file: str) -> bool:  # this repository's code, not its virtual environment nor this file
    path = Path(file)
    return path.is_relative_to(ROOT) and not path.relative_to(ROOT).parts[0].startswith(".") and file != __file__


def _to_device(args, kwargs) -> bool:  # a factory copying host data to a device a tensor was found on
    # device="cpu" spelled as a string is an explicit host placement (torch.optim's step counters): it stays
    # on the host with a GPU too. The codec places tensors with ``device=<tensor>.device`` objects.
    device = kwargs.get("device")
    return device is not None and device != "cpu" and not (args and isinstance(args[0], torch.Tensor))


def _is_device(value) -> bool:
    return isinstance(value, torch.device) or (isinstance(value, str) and value.split(":")[0] in ("cpu", "cuda"))


def _to_host(func, args, kwargs) -> bool:
    if func is _aten.copy_.default:  # copy_(destination, source)
        return args[0].device.type == "cpu" and args[1].device.type != "cpu"
    return args[0].device.type != "cpu" and kwargs.get("device") is not None and kwargs["device"].type == "cpu"


class HostSyncRecorder:
    """``with HostSyncRecorder() as syncs:`` ... then ``syncs.events``: each would-be sync, with its stack."""

    def __init__(self) -> None:
        self.events: list[Sync] = []
        self._modes = (_Functions(self.note), _Dispatch(self.note))

    def __enter__(self) -> "HostSyncRecorder":
        for mode in self._modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(*exc)

    def note(self, what: str) -> None:
        stack, frame = [], sys._getframe(2)
        while frame is not None:
            file, function = frame.f_code.co_filename, frame.f_code.co_name
            if (file in _EXEMPT_FILES or file.endswith(_EXEMPT_SUFFIXES)
                    or any(file.endswith(f) and function == fn for f, fn in _EXEMPT_FUNCTIONS)):
                return
            if _in_project(file):
                stack.append((str(Path(file).relative_to(ROOT)), function, frame.f_lineno))
            frame = frame.f_back
        self.events.append(Sync(what, tuple(stack)))
