import sys
from pathlib import Path

# benchmarks/ is not an installed package: make `import benchmarks.evals` work under plain `pytest`.
ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
