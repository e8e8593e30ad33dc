"""Helpers shared by the fixture generators in tools/ (torch_ref.py, torch_ref_baselines.py,
torch_ref_losses.py, metrics_ref.py).

The generators are run as scripts from the repository root (`python3 tools/xxx.py [out]`),
so tools/ is sys.path[0] and they import this module as plain `fixture_io`. It needs only
the standard library and NumPy; torch tensors are handled by duck typing, so metrics_ref.py
does not pull in torch.
"""
import json
import os
import struct

import numpy as np

_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.int32): "I32"}


def write_safetensors(path, tensors, meta):
    """Write `tensors` and `meta` to `path` as a safetensors file, atomically.

    tensors  list of (name, value); value is a torch tensor (detached, made contiguous and
             read through .numpy(), so it must live on the CPU) or anything
             numpy.ascontiguousarray accepts. The dtype must be float32 (stored as F32) or
             int32 (I32); anything else raises ValueError, as does a repeated name.
    meta     dict written as "__metadata__"; every value is converted with str().

    Layout, byte for byte (the committed fixtures depend on it): an unsigned 64-bit
    little-endian header length; the JSON header with compact separators (",", ":"), one
    entry {"dtype", "shape", "data_offsets"} per tensor in list order followed by
    "__metadata__", padded with spaces to a multiple of 8 bytes; then the raw native
    (little-endian) data of the tensors, in list order with no gaps. Offsets are relative
    to the start of the data. The file is written to path + ".tmp" and renamed over
    `path`, so a reader never sees a partial file.
    """
    header, blobs, off = {}, [], 0
    for name, t in tensors:
        if name in header or name == "__metadata__":
            raise ValueError(f"{name}: duplicate or reserved tensor name")
        if hasattr(t, "detach"):  # torch.Tensor
            a = t.detach().contiguous().numpy()
        else:
            a = np.ascontiguousarray(t)
        if a.dtype not in _DTYPES:
            raise ValueError(f"{name}: dtype {getattr(t, 'dtype', a.dtype)}")
        raw = a.tobytes()
        header[name] = {"dtype": _DTYPES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {k: str(v) for k, v in meta.items()}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def leaf(t):
    """Return a float64 copy of the torch tensor `t` that is a fresh autograd leaf
    (requires_grad=True, no history), so .grad collects d(loss)/d(t) in float64.
    `t` itself (typically the float32 value stored in the fixture) is left untouched."""
    return t.double().clone().requires_grad_(True)
