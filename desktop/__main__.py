"""`python -m desktop` runs the same command as `diffusion-studio`."""
import sys

from desktop.cli import main

if __name__ == "__main__":
    sys.exit(main())
