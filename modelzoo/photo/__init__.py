"""Whole photos: reading images, MediaPipe's regions of interest, the crop warp, and the
detector → landmark pipeline (static images and tracking)."""
from .image import load_image
from .pipeline import FacePipeline, FaceTracker, Face, PhotoResult
from .roi import Roi, detection_roi, landmarks_roi, letterbox_roi
from .warp import crop_tensor

__all__ = ["Face", "FacePipeline", "FaceTracker", "PhotoResult", "Roi", "crop_tensor", "detection_roi",
           "landmarks_roi", "letterbox_roi", "load_image"]
