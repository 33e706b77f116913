"""Build inputs of the sandbox images, shipped with the package so an installed fleetgate can build them."""

from pathlib import Path

ROOT = Path(__file__).parent
