"""Deblur one image with a served bundle (`python -m runtime.serve`) over HTTP, with tritonclient alone.

python examples/triton_client.py photo.jpg restored.png [HOST:PORT]
"""

import sys

import cv2
import numpy as np
import tritonclient.http as http

source, target, url = sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1:8000"
image = np.ascontiguousarray(cv2.imread(source, cv2.IMREAD_COLOR)[None, ..., ::-1])  # 1 x H x W x 3 RGB uint8
request = http.InferInput("image", list(image.shape), "UINT8")
request.set_data_from_numpy(image)
result = http.InferenceServerClient(url).infer("deblur", [request])
print("trajectory", result.as_numpy("trajectory").shape)  # (1, 25, 3): (pitch, yaw, roll) radians per pose
cv2.imwrite(target, result.as_numpy("restored")[0, ..., ::-1])
