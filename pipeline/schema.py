"""Column names: the interface between operators, named once. Formats and frames are in the names.

Stream rows are one per image until the sink. An image that failed at some stage keeps flowing with its
``error_*`` columns set (and empty image columns) so that it ends up in ``errors/``; operators skip such rows.
"""

from __future__ import annotations

# --- input listing -------------------------------------------------------------------------------------------
IMAGE_ID = "image_id"  # str, deterministic id of the image (see pipeline.io.listing.image_id_for)
IMAGE_URI = "image_uri"  # str, where the image was read from

# --- read ------------------------------------------------------------------------------------------------------
IMAGE_BYTES = "image_bytes"  # binary, the compressed file as stored

# --- decode ----------------------------------------------------------------------------------------------------
IMAGE_RGB = "image_rgb"  # binary, raw HWC uint8 RGB of the image resized to the encoder's long side (PIL-exact)
INPUT_H = "input_h"  # int32, height of IMAGE_RGB
INPUT_W = "input_w"  # int32, width of IMAGE_RGB
IMAGE_HEIGHT = "image_height"  # int32, original height after EXIF orientation
IMAGE_WIDTH = "image_width"  # int32, original width after EXIF orientation

# --- errors (null when the row is fine) -----------------------------------------------------------------------
ERROR_STAGE = "error_stage"  # str: "read" | "decode" | "detect" | "segment"
ERROR_TYPE = "error_type"  # str: short machine-readable reason, e.g. "truncated", "too_large", "not_an_image"
ERROR_MESSAGE = "error_message"  # str: one human-readable line

ERROR_COLUMNS = (ERROR_STAGE, ERROR_TYPE, ERROR_MESSAGE)
