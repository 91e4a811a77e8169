"""Boxes from a Hugging Face object detector, for ``vlp features extract --detector DIR``.

A local directory written by ``save_pretrained`` — an object-detection model (DETR,
Conditional/Deformable DETR, YOLOS, RT-DETR, …: whatever ``AutoModelForObjectDetection``
loads) and its ``preprocessor_config.json`` — proposes the boxes in place of selective
search. The detector's own pre- and post-processing are used (its resize, normalisation
and ``post_process_object_detection``), so each family's box format and score (softmax
without the no-object class, or sigmoid) are read as that family defines them. Nothing
is downloaded: the directory must hold everything.

The region features, class distributions and selection stay those of
:mod:`vlp.convert.extract`; a detected box's score is the detector's confidence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vlp.errors import VlpError


class HFDetector:
    """Class-agnostic boxes and confidences from a local Hugging Face detector.

    Args:
        path: the ``save_pretrained`` directory (``config.json``, weights,
            ``preprocessor_config.json``).
        max_boxes: detections kept per image, most confident first.
        min_box_frac: drop boxes thinner than this fraction of the image's shorter side.

    Raises:
        VlpError: the directory is missing, lacks a file, or holds no object-detection
            model; one line naming it.
    """

    def __init__(self, path: str | Path, max_boxes: int = 2000,
                 min_box_frac: float = 0.0) -> None:
        try:
            from transformers import AutoImageProcessor, AutoModelForObjectDetection
        except ImportError:
            raise VlpError("--detector needs the transformers package: pip install "
                           "transformers") from None

        self.path = Path(path)
        for name in ("config.json", "preprocessor_config.json"):
            if not (self.path / name).is_file():
                raise VlpError(f"--detector {self.path}: no {name} there (expected a "
                               "Hugging Face object-detection directory written by "
                               "save_pretrained)")
        try:
            self.model = AutoModelForObjectDetection.from_pretrained(
                self.path, local_files_only=True).eval()
            self.processor = AutoImageProcessor.from_pretrained(self.path,
                                                                local_files_only=True)
        except (ValueError, OSError, KeyError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise VlpError(f"--detector {self.path}: not a loadable object-detection model "
                           f"({first})") from None
        if not hasattr(self.processor, "post_process_object_detection"):
            raise VlpError(f"--detector {self.path}: its image processor "
                           f"({type(self.processor).__name__}) has no "
                           "post_process_object_detection")
        self.max_boxes, self.min_box_frac = max_boxes, min_box_frac

    @property
    def model_type(self) -> str:
        return str(self.model.config.model_type)

    def __call__(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        """The detections of one RGB image.

        Returns:
            boxes: (n, 4) float32 x1 y1 x2 y2 in the image's pixels, inside the image;
            scores: (n,) float32 confidences, decreasing.
        """
        w, h = image.size
        inputs = self.processor(images=image, return_tensors="pt")
        with torch.inference_mode():
            outputs = self.model(**inputs)
            found = self.processor.post_process_object_detection(
                outputs, threshold=0.0, target_sizes=[(h, w)])[0]
        boxes = found["boxes"].float().reshape(-1, 4)
        boxes = torch.minimum(boxes.clamp(min=0), torch.tensor([w, h, w, h],
                                                               dtype=torch.float32))
        scores = found["scores"].float().reshape(-1)
        side = max(self.min_box_frac * min(w, h), 1.0)
        keep = ((boxes[:, 2:] - boxes[:, :2]) >= side).all(dim=1)
        boxes, scores = boxes[keep], scores[keep]
        order = torch.argsort(scores, descending=True, stable=True)[:self.max_boxes]
        return boxes[order].numpy(), scores[order].numpy()

    def settings(self) -> dict[str, Any]:
        """What a resumed extraction must share: the model type, weights and
        pre-processing (no paths)."""
        from vlp.convert.extract import weights_sha256

        processor = json.loads((self.path / "preprocessor_config.json").read_text(
            encoding="utf-8"))
        return {"detector": self.model_type, "detector_weights_sha256":
                weights_sha256(self.model), "detector_preprocessor": processor}


__all__ = ["HFDetector"]
