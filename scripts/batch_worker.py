"""The Ray actor of ``talkinghead.py batch --ray``: a top-level module so that Ray workers can import it by name
(scripts/ is put on their PYTHONPATH), which in turn imports the pack under its fixed name."""
from import_pack import import_pack

import_pack()

from talkinghead.scripts.batch.worker import ChunkWorker  # noqa: E402


class RayChunkWorker(ChunkWorker):
    pass
