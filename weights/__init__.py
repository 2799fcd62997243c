"""External weight files of the pack: the manifest, the ``weights`` command and "file missing" messages.

Standard library only and free of ComfyUI imports; importing it reads nothing and downloads nothing.
(The download function stays at ``weights.fetch.fetch``: re-exporting it here would hide the ``fetch`` module.)
"""
from .fetch import find_models_dir, main, missing_message, missing_message_for_file
from .manifest import expected_path, file_state, load_manifest, validate_manifest

__all__ = ["expected_path", "file_state", "find_models_dir", "load_manifest", "main", "missing_message",
           "missing_message_for_file", "validate_manifest"]
