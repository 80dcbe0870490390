"""A decode loads no training code, and on the CPU no torch at all: checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TRAINING = ("codec.train", "codec.options", "torch", "pytorch_msssim")  # torch covers torch.optim

CHILD = """
import json, sys
import numpy as np
from PIL import Image
import codec
from cli.main import main

path, png = sys.argv[1:]
pixels = codec.decode(path)
with Image.open(path) as im:
    im.load()
    assert np.array_equal(np.asarray(im), pixels)
assert main(["decode", path, png]) == 0 and main(["info", path]) == 0
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("codec", "torch", "pytorch_msssim"))))
"""


def test_a_decode_loads_no_training_code_and_no_torch(encoded, tmp_path):
    path = tmp_path / "x.gsi"
    path.write_bytes(encoded.data)
    child = subprocess.run([sys.executable, "-c", CHILD, str(path), str(tmp_path / "x.png")], cwd=REPO,
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr
    modules = json.loads(child.stdout.splitlines()[-1])
    assert "codec.decode.decoder" in modules  # the child did decode with this tree's codec
    loaded = sorted({name for name in TRAINING for m in modules if m == name or m.startswith(name + ".")})
    assert not loaded, f"a decode loaded {loaded}"
