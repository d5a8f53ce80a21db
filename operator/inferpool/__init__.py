"""inferpool: places model-serving replicas across accelerator families."""

__version__ = "0.1.0"
