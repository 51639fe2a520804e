"""What a run will cost before it starts, and keeping its memory in check.

* ``probe``        what the process holds and may still take (RSS, CUDA, /proc)
* ``calibration``  one evaluation's measured cost on this device, kept in the user's cache
* ``forecast``     a run's peak memory and wall time, and the plan that fits a budget
                   (which scales are tiled, tile size, L-BFGS history)
* ``allocator``    keeping freed blocks for reuse in one-shot commands (glibc)
"""

from brushwork.engine.memory.calibration import Calibration, NotMeasured, calibration_for
from brushwork.engine.memory.forecast import Estimate, ScalePlan, estimate, plan
from brushwork.engine.memory.probe import PeakMeter, default_budget

__all__ = ["Calibration", "NotMeasured", "calibration_for", "Estimate", "ScalePlan",
           "estimate", "plan", "PeakMeter", "default_budget"]
