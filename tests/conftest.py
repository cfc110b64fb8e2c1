import os
import tempfile

# Hermetic graph cache for the whole test session (never the user's cache).
os.environ.setdefault("COSTMODEL_CACHE", tempfile.mkdtemp(prefix="costmodel-test-cache-"))
