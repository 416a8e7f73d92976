"""Providers: one module per external service or local engine, behind the Protocols of `base`."""

from genfactory.providers.base import (
    BackgroundRemover,
    BackgroundResult,
    GenerationRequest,
    GenerationResult,
    ImageInput,
    ImageMetadata,
    ImageProvider,
    ImageResult,
    MetadataProvider,
    MetadataRequest,
    PromptProvider,
    PromptRequest,
    QCProvider,
    QCRequest,
    QCVerdict,
    Usage,
)
from genfactory.providers.registry import ProviderContext, build_provider, check_credentials

__all__ = [
    "BackgroundRemover",
    "BackgroundResult",
    "GenerationRequest",
    "GenerationResult",
    "ImageInput",
    "ImageMetadata",
    "ImageProvider",
    "ImageResult",
    "MetadataProvider",
    "MetadataRequest",
    "PromptProvider",
    "PromptRequest",
    "ProviderContext",
    "QCProvider",
    "QCRequest",
    "QCVerdict",
    "Usage",
    "build_provider",
    "check_credentials",
]
