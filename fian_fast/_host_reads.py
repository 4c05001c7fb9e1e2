"""Counting the host reads of a piece of code, on any device (the CPU included).

A host read is a point where Python waits for a tensor's values: on a GPU each one stalls the
host until the device has caught up, and one inside a training step keeps the step from being
captured in a CUDA graph. Counted here:

* ``aten._local_scalar_dense`` — what ``.item()``, ``bool(t)``, ``int(t)`` and ``float(t)`` run —
  seen by a ``TorchDispatchMode``, which also counts every aten op dispatched;
* Python calls of ``Tensor.cpu``, ``Tensor.tolist`` and ``Tensor.numpy`` (copies to the host).

Reads made inside a C++ kernel (below the dispatcher) are not seen; they are not host reads of
the Python program. Used by the tests (a training step makes none) and the benchmarks.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Dict, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["HostReads", "count_host_reads"]

_COPIES = ("cpu", "tolist", "numpy")


@dataclass
class HostReads:
    """``scalar_reads`` (``_local_scalar_dense`` calls), ``copies`` (Python ``.cpu()``,
    ``.tolist()``, ``.numpy()`` calls) and ``ops`` (aten ops dispatched) of a counted block;
    ``by_op`` counts the ops by name."""
    scalar_reads: int = 0
    copies: int = 0
    ops: int = 0
    by_op: Dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.scalar_reads + self.copies


class _Counter(TorchDispatchMode):
    def __init__(self, reads: HostReads) -> None:
        super().__init__()
        self.reads = reads

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket.__name__)
        self.reads.ops += 1
        self.reads.by_op[name] = self.reads.by_op.get(name, 0) + 1
        if func is torch.ops.aten._local_scalar_dense.default:
            self.reads.scalar_reads += 1
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def count_host_reads() -> Iterator[HostReads]:
    """Count the host reads and aten ops of the block: ``with count_host_reads() as reads: ...``."""
    reads = HostReads()
    originals = {name: getattr(torch.Tensor, name) for name in _COPIES}

    def counted(name):
        original = originals[name]

        def method(self, *args, **kwargs):
            reads.copies += 1
            return original(self, *args, **kwargs)

        return method

    try:
        for name in _COPIES:
            setattr(torch.Tensor, name, counted(name))
        with _Counter(reads):
            yield reads
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
