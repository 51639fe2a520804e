"""Measuring brushwork on this machine: figures printed, never asserted.

* ``measure``     one evaluation's time and FLOP rate, ablations, memory, time to quality,
                  the full report of ``brushwork bench``
* ``print_size``  print-size runs against their estimates (``brushwork bench --print``)
"""

# eval_probe: what `--baseline` runs in another checkout's process, by this path (which
# every layout of brushwork has had).
from brushwork.bench.measure import (
    coarse_stop,
    eval_ablation,
    eval_probe,
    mask_cost,
    measure_eval,
    run,
)

__all__ = ["run", "measure_eval", "eval_ablation", "eval_probe", "coarse_stop", "mask_cost"]
