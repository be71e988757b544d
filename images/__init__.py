"""learnact.images: the sandbox images, built offline (no container registry needed)."""

from learnact.images.build import BaseKind, build_images
from learnact.images.common import ImageBuildError, ImageInfo

__all__ = ["BaseKind", "ImageBuildError", "ImageInfo", "build_images"]
