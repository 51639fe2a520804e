"""Video: style transfer for moving pictures without flicker (Ruder, Dosovitskiy and Brox,
"Artistic style transfer for videos", GCPR 2016), on brushwork's engine.

Needs the ``video`` extra (PyAV and OpenCV), imported only when a video is painted.
"""

from brushwork.video.paint import FrameStep, VideoInterrupted, VideoResult, stylize_video
from brushwork.video.settings import VideoSettings

__all__ = ["stylize_video", "VideoSettings", "VideoResult", "VideoInterrupted", "FrameStep"]
