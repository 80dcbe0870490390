"""Typed errors of the codec's public API."""


class CodecError(Exception):
    """Base class of every error the codec raises on purpose."""


class BitstreamError(CodecError, ValueError):
    """A bitstream is malformed; the message names the offending field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class DecodeOptionError(CodecError, ValueError):
    """What a decode was asked to render (size, scale, box) is invalid or too large; ``field`` names the option."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class DecodeLimitError(DecodeOptionError):
    """A decode would cost more than its limits allow: ``field`` is "size" (output pixels) or "evaluations"
    (Gaussian-pixel pairs the render would visit)."""


class ImageError(CodecError, ValueError):
    """An input image cannot be read or is not supported; ``code`` is a stable machine-readable tag."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class EncodeCancelled(CodecError):
    """The progress callback asked the encoder to stop."""
