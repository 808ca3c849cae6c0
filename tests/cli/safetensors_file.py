"""safetensors_file.py: reads a .safetensors file's float tensors (F32, F64) for the comparison scripts."""
import array
import json
import struct


def read_tensors(path, dtypes=("F32", "F64")):
    """{name: (shape, array)} of every tensor; a dtype outside `dtypes` is an AssertionError naming it."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] in dtypes, (name, info["dtype"])
        b, e = info["data_offsets"]
        out[name] = (info["shape"], array.array({"F32": "f", "F64": "d"}[info["dtype"]], data[b:e]))
    return out
