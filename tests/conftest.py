import os

# Qt runs headless in tests; a real window is the app's business, not the test suite's.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Tests never touch the network: any accidental hub access fails fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
