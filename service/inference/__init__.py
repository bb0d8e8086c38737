"""Model serving: loading, dynamic batching and the forward passes behind /v1/predict and /v1/generate.

Nothing here may reach a model hub, so offline mode is forced before transformers is first imported.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
