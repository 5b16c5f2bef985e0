"""AP of one PETR checkpoint with and without test-time augmentation (#15 item 7 numbers):
    python tools/petr_tta_variants.py CONFIG CHECKPOINT DATA_ROOT OUT_DIR [SCALES ...]
runs plain eval, flip, multi-scale (SCALES, default 800 1000 1200) and both; prints one line each and
writes OUT_DIR/<variant>/metrics.json."""
import copy
import os
import sys

from posetr.config import load_config
from posetr.engine.run import run_eval


def main(argv):
    config, checkpoint, root, out = argv[:4]
    scales = [int(s) for s in argv[4:]] or [800, 1000, 1200]
    base = load_config(config)
    base.data.root = root
    for name, flip, ms in (("plain", False, []), ("flip", True, []), ("multiscale", False, scales),
                           ("flip_multiscale", True, scales)):
        cfg = copy.deepcopy(base)
        cfg.eval.flip, cfg.eval.scales = flip, ms
        metrics = run_eval(cfg, checkpoint=checkpoint, output_dir=os.path.join(out, name))
        print(f"{name}: " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if v is not None and k.startswith("AP")),
              flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
