"""Quality and sync metrics shared by the Diff2Lip and GAGAvatar metrics nodes (pure numpy/torch, no ComfyUI)."""
