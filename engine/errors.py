"""One error tree for the whole studio.

Every error carries a ``message`` that is safe to show to a user (no paths to secrets, no
tracebacks) and a ``hint`` that says what to do next. Third-party exceptions are converted
into these where they enter the engine; the UI shows ``message``/``hint``, the HTTP API maps
the class to a status code (engine/server/errors.py, one table), the CLI prints them and exits
non-zero. The hierarchy (class, then the ``code`` clients see; tests/engine/test_errors_doc.py keeps it
true):

    StudioError                        studio_error
        CollectionError                collection_error
            CollectionNotFoundError    collection_not_found
            DocumentNotFoundError      document_not_found
            ModelMismatchError         model_mismatch
                VariantMismatchError   variant_mismatch
        ConfigError                    config_error
            RegistryError              registry_error
        ConversionError                conversion_error
            RemoteCodeRefusedError     remote_code_refused
            UnsupportedModelError      unsupported_model
        DocumentError                  document_error
            CorruptDocumentError       corrupt_document
            DocumentLimitError         document_limit
            EmptyDocumentError         empty_document
            EncryptedDocumentError     encrypted_document
        HubError                       hub_error
            HubOfflineError            hub_offline
        InferenceError                 inference_error
        InputError                     invalid_input
            PayloadTooLargeError       payload_too_large
            RequestError               invalid_input
        ModelFileError                 model_file_error
        ModelNotConvertedError         model_not_converted
        ModelNotFoundError             model_not_found
        OCRError                       ocr_error
            OCRAuthError               ocr_auth
            OCRRateLimitError          ocr_rate_limited
            OCRServiceError            ocr_service_error
            OCRUnavailableError        ocr_unavailable
        ProviderError                  provider_unavailable
        ServiceBusyError               server_busy
        StorageError                   storage_error
            StorageFullError           storage_full
"""

from __future__ import annotations


class StudioError(Exception):
    """Base class: a failure the user can understand and act on."""

    code = "studio_error"

    def __init__(self, message: str, hint: str = "", *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.param = param  # the option at fault, by the name the engine's call and the HTTP field give it

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def to_dict(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message, "hint": self.hint}


# --- configuration and models -------------------------------------------------------------
class ConfigError(StudioError):
    code = "config_error"


class RegistryError(ConfigError):
    code = "registry_error"


class ModelNotFoundError(StudioError):
    code = "model_not_found"


class ModelNotConvertedError(StudioError):
    code = "model_not_converted"


class ModelFileError(StudioError):
    """A model folder is incomplete or a file in it is corrupt."""

    code = "model_file_error"


class ProviderError(StudioError):
    code = "provider_unavailable"


class InferenceError(StudioError):
    code = "inference_error"


class HubError(StudioError):
    code = "hub_error"


class HubOfflineError(HubError):
    code = "hub_offline"


class ConversionError(StudioError):
    code = "conversion_error"


class UnsupportedModelError(ConversionError):
    code = "unsupported_model"


class RemoteCodeRefusedError(ConversionError):
    code = "remote_code_refused"


class InputError(StudioError):
    """The caller's input is invalid (limits, empty values, bad options)."""

    code = "invalid_input"


class RequestError(InputError):
    """An HTTP request field is invalid; ``param`` names it the way OpenAI's errors do."""

    def __init__(self, message: str, param: str | None = None, hint: str = "") -> None:
        super().__init__(message, hint, param=param)


class PayloadTooLargeError(InputError):
    code = "payload_too_large"


class ServiceBusyError(StudioError):
    """More work is waiting than the server queues; the client should retry later."""

    code = "server_busy"


# --- documents and OCR ----------------------------------------------------------------------
class DocumentError(StudioError):
    code = "document_error"


class CorruptDocumentError(DocumentError):
    code = "corrupt_document"


class EncryptedDocumentError(DocumentError):
    code = "encrypted_document"


class EmptyDocumentError(DocumentError):
    code = "empty_document"


class DocumentLimitError(DocumentError):
    code = "document_limit"


class OCRError(StudioError):
    code = "ocr_error"


class OCRUnavailableError(OCRError):
    code = "ocr_unavailable"


class OCRAuthError(OCRError):
    code = "ocr_auth"


class OCRRateLimitError(OCRError):
    code = "ocr_rate_limited"


class OCRServiceError(OCRError):
    code = "ocr_service_error"


# --- collections ---------------------------------------------------------------------------------
class CollectionError(StudioError):
    code = "collection_error"


class CollectionNotFoundError(CollectionError):
    code = "collection_not_found"


class DocumentNotFoundError(CollectionError):
    """The collection holds no document of that name or doc_id."""

    code = "document_not_found"


class ModelMismatchError(CollectionError):
    code = "model_mismatch"


class VariantMismatchError(ModelMismatchError):
    """The collection holds vectors of another variant (fp32, int8, ...) of its model."""

    code = "variant_mismatch"


# --- storage -------------------------------------------------------------------------------------
class StorageError(StudioError):
    """The data folder refused a read or write (permissions, read-only file system, path too long).
    Converted from OSError where files are written (engine/storage.py); nothing partial is left."""

    code = "storage_error"

    def __init__(self, message: str, hint: str = "", code: str | None = None) -> None:
        super().__init__(message, hint)
        if code:
            self.code = code  # storage_read_only, storage_permission, storage_path_too_long


class StorageFullError(StorageError):
    """No space left on the device (or the quota) that holds the data folder."""

    code = "storage_full"
