#!/usr/bin/env python3
"""set_tensor.py FILE NAME VALUE: sets element 0 of tensor NAME (F32 or BF16) of a .safetensors file to VALUE
(a float: nan, inf, 1e30), in place. Test helper for bad checkpoints."""
import json, struct, sys

path, name, value = sys.argv[1], sys.argv[2], float(sys.argv[3])
with open(path, "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    info = json.loads(f.read(n))[name]
    f.seek(8 + n + info["data_offsets"][0])
    if info["dtype"] == "F32":
        f.write(struct.pack("<f", value))
    elif info["dtype"] == "BF16":
        f.write(struct.pack("<f", value)[2:])
    else:
        sys.exit(f"{name}: dtype {info['dtype']} not supported")
