"""genfactory: keywords in, finished and sellable AI-generated images out."""

__version__ = "0.1.0"
