"""Evidence intake errors, one code per way a file can be refused."""
from core.errors import InvalidInput, TooLarge, UnsupportedMedia


class EmptyFile(InvalidInput):
    code = "empty_file"
    detail = "The file is empty."


class FileTooLarge(TooLarge):
    code = "file_too_large"


class UnsupportedMediaType(UnsupportedMedia):
    code = "unsupported_media_type"
    detail = "Only JPEG, PNG, WebP, HEIC photos and MP4/MOV videos are accepted."


class TruncatedImage(InvalidInput):
    code = "truncated_image"
    detail = "The image is cut short (the upload may have been interrupted); send it again."


class DecompressionBomb(InvalidInput):
    code = "decompression_bomb"


class PolyglotFile(InvalidInput):
    code = "polyglot_file"
    detail = "The file carries extra data after the image (e.g. an appended archive or script)."


class CorruptMedia(InvalidInput):
    code = "corrupt_media"
    detail = "The file cannot be decoded."
