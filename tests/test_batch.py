"""``talkinghead.py batch``: chunk plans, the workflow rewrite, sub-clip cutting, the manifest, and whole batches on
the tiny official-format Diff2Lip model: chunked on a local 2-worker Ray cluster (one worker killed mid-batch) against
unchunked on one worker, and an interrupted batch resumed."""
from __future__ import annotations

import json
import os
import signal
import uuid
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from talkinghead.pipelines.lossless import iter_video_frames, video_rate, write_lossless
from talkinghead.pipelines.media import read_audio, read_video, write_video, write_wav
from talkinghead.scripts.batch.cut import audio_range, subclips
from talkinghead.scripts.batch.manifest import Manifest, file_record, verified
from talkinghead.scripts.batch.plan import alignment_step, pair_inputs, plan_chunks
from talkinghead.scripts.batch.pool import LocalPool, WorkerLost
from talkinghead.scripts.batch.run import main as batch_main, run_batch
from talkinghead.scripts.batch.workflow import SINK, chunk_prompt
from talkinghead.scripts.build_workflows import WORKFLOWS
from talkinghead.scripts.runner import apply_overrides, load_api_workflow

import media

# max_gap 0: the face-less frames 20-21 of the long clip pass through (bridging would fill them), which checks that
# pass-through counts are stitched across chunks
TINY = ["Diff2Lip Model.ckpt_name=\"tiny_unet.pt\"", "Diff2Lip Model.num_head_channels=32", "Lip Sync.quality=\"fast\"",
        "Lip Sync.max_gap=0"]


# ---------------------------------------------------------------------------------------------------------------
# planning and cutting (no server)


@pytest.mark.parametrize("frames,fps,rate,seconds,context", [(45, Fraction(25), 16000, 0.6, 0.3),
                                                              (100, Fraction(30000, 1001), 48000, 1.0, 0.5),
                                                              (31, Fraction(30), 44100, 0.3, 0.2)])
def test_chunks_cover_every_frame_once_with_aligned_context(frames, fps, rate, seconds, context):
    chunks = plan_chunks(frames, fps, rate, seconds, context)
    assert len(chunks) >= 3
    assert [c.start for c in chunks[1:]] == [c.end for c in chunks[:-1]] and chunks[0].start == 0
    assert chunks[-1].end == frames
    step = alignment_step(fps, rate)
    need = int(np.ceil(context * fps))
    for c in chunks:
        assert c.context_start % step == 0  # the sub-clip's audio starts on a whole sample and mel frame
        assert (Fraction(c.context_start) * rate / fps).denominator == 1
        assert (Fraction(c.context_start) * 80 / fps).denominator == 1
        assert c.context_start <= max(0, c.start - need) and c.start - c.context_start < need + step
        assert c.context_end == min(frames, c.end + need)
    assert plan_chunks(frames, fps, rate, 0, context) == [plan_chunks(frames, fps, rate, 1000, 0)[0]]


def test_alignment_steps():
    assert alignment_step(Fraction(25), 16000) == 5  # 80 mel frames/s: 3.2 per frame
    assert alignment_step(Fraction(25), 44100) == 5
    assert alignment_step(Fraction(30), 48000) == 3
    assert alignment_step(Fraction(30000, 1001), 48000) == 375


def test_workflow_rewrite_feeds_the_subclip_and_keeps_own_frames():
    prompt = load_api_workflow(WORKFLOWS / "diff2lip_api.json")
    out = chunk_prompt(prompt, "cut.mkv", "cut.wav", 7, 15, "batch_x/chunk")
    # the bundled workflow streams: its encoded stream is read back as IMAGE for the lossless sink
    assert out["1"]["inputs"]["video"] == "cut.mkv" and out["3"]["inputs"]["audio"] == "cut.wav"
    assert out["15"]["class_type"] == SINK and out["16"]["inputs"]["stream"] == ["7", 0]
    assert out["15"]["inputs"] == {"images": ["16", 0], "fps": 25.0, "filename_prefix": "batch_x/chunk",
                                   "keep_start": 7, "keep_count": 15}
    assert prompt["15"]["class_type"] == "SaveVideo"  # the original is not modified
    with pytest.raises(SystemExit, match="Load Video"):
        chunk_prompt(load_api_workflow(WORKFLOWS / "gagavatar_api.json"), "a.mkv", None, 0, 0, "p")


def test_workflow_rewrite_of_a_frame_stream_graph():
    """The streaming form: Load Video (stream) -> lip sync stream -> Encode Stream -> Save Video."""
    prompt = {"1": {"class_type": "TalkingHeadLoadVideoStream",
                    "inputs": {"video": "x.mp4", "start_frame": 10, "frame_count": 5}},
              "3": {"class_type": "TalkingHeadLoadAudio", "inputs": {"audio": "x.wav"}},
              "7": {"class_type": "Diff2LipLipSyncStream", "inputs": {"stream": ["1", 0], "audio": ["3", 0]}},
              "14": {"class_type": "TalkingHeadEncodeStream", "inputs": {"stream": ["7", 0], "crf": 18}},
              "15": {"class_type": "SaveVideo", "inputs": {"video": ["14", 0], "filename_prefix": "p"}}}
    out = chunk_prompt(prompt, "cut.mkv", "cut.wav", 3, 4, "q", fps=30.0)
    assert out["1"]["inputs"] == {"video": "cut.mkv", "start_frame": 0, "frame_count": 0}
    assert out["16"] == {"class_type": "TalkingHeadStreamToImages", "_meta": {"title": "Batch chunk frames"},
                         "inputs": {"stream": ["7", 0], "chunk_size": 16}}
    assert out["15"]["inputs"] == {"images": ["16", 0], "fps": 30.0, "filename_prefix": "q", "keep_start": 3,
                                   "keep_count": 4}


def test_inputs_pair_by_name_else_one_audio_for_all_else_own_sound(tmp_path):
    names = ["a.mp4", "b.mp4", "a.wav"]
    for n in names:
        (tmp_path / n).write_bytes(b"")
    jobs = pair_inputs([tmp_path / n for n in names], needs_audio=True)
    assert [(j.video.name, j.audio.name) for j in jobs] == [("a.mp4", "a.wav"), ("b.mp4", "a.wav")]
    (tmp_path / "b.wav").write_bytes(b"")
    jobs = pair_inputs([tmp_path / n for n in names + ["b.wav"]], needs_audio=True)
    assert [j.audio.name for j in jobs] == ["a.wav", "b.wav"]
    jobs = pair_inputs([tmp_path / "a.mp4", tmp_path / "b.mp4"], needs_audio=True)
    assert [j.audio.name for j in jobs] == ["a.mp4", "b.mp4"]  # the video's own sound track
    assert pair_inputs([tmp_path / "a.mp4", tmp_path / "a.wav"], needs_audio=False)[0].audio is None


def test_subclips_are_exact_frames_and_samples(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (23, 24, 32, 3), dtype=np.uint8)
    fps = Fraction(30000, 1001)
    clip = write_lossless(tmp_path / "clip.mkv", frames, fps)
    assert video_rate(clip) == fps
    assert np.array_equal(np.stack(list(iter_video_frames(clip))), frames)  # lossless round trip
    chunks = plan_chunks(23, fps, None, 0.25, 0.1)
    for chunk, got in subclips(clip, chunks):
        assert np.array_equal(np.stack(got), frames[chunk.context_start:chunk.context_end])
    samples = rng.standard_normal((1, 16000)).astype(np.float32) * 0.1
    audio = {"waveform": __import__("torch").from_numpy(samples[None]), "sample_rate": 16000}
    chunk = plan_chunks(25, Fraction(25), 16000, 0.4, 0.2)[1]  # own 10..20, context from 5
    part = audio_range(audio, chunk, Fraction(25))
    assert np.array_equal(part, samples[:, chunk.context_start * 640:chunk.context_end * 640 + 1600])


def test_manifest_is_written_atomically_and_verifies_size_and_hash(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"12345")
    manifest = Manifest(tmp_path)
    manifest.video("k")["chunks"]["0"] = file_record(tmp_path / "x.bin", tmp_path)
    manifest.save()
    assert [p.name for p in tmp_path.iterdir()] and not list(tmp_path.glob(".*part"))
    again = Manifest.open(tmp_path, resume=True)
    record = again.video("k")["chunks"]["0"]
    assert verified(record, tmp_path)
    (tmp_path / "x.bin").write_bytes(b"12346")  # same size, other content
    assert not verified(record, tmp_path)
    with pytest.raises(SystemExit, match="--resume"):
        Manifest.open(tmp_path, resume=False)


# ---------------------------------------------------------------------------------------------------------------
# whole batches through real ComfyUI servers


@pytest.fixture(scope="module")
def batch_media(tmp_path_factory):
    """Three clips with their speech: one of 45 frames (3 chunks of 0.6 s), two of 8; one with face-less frames."""
    folder = tmp_path_factory.mktemp("batch_inputs")
    long = media.clip_with_missing_faces(frames=45, missing=(20, 21), fps=25.0, size=(128, 128))
    write_video(folder / "long.mp4", long.frames, 25.0)
    write_wav(folder / "long.wav", media.speech_16k(seconds=2.0), 16000)
    for i, name in enumerate(("short1", "short2")):
        clip = media.talking_clip(frames=8, fps=25.0, size=(128, 128))
        write_video(folder / f"{name}.mp4", clip.frames[::-1] if i else clip.frames, 25.0)
        write_wav(folder / f"{name}.wav", media.speech_16k(seconds=0.4, start_clip=i + 1), 16000)
    return folder


def _jobs(folder: Path):
    return pair_inputs(sorted(folder.glob("*.mp4")) + sorted(folder.glob("*.wav")), needs_audio=True)


def _prompt():
    return apply_overrides(load_api_workflow(WORKFLOWS / "diff2lip_api.json"), TINY)


def _processes_running_from(folder: str, wait: float = 20.0) -> list[int]:
    import time

    deadline = time.monotonic() + wait
    while True:
        pids = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if folder.encode() in cmdline.read_bytes():
                    pids.append(int(cmdline.parent.name))
            except OSError:
                continue
        if not pids or time.monotonic() > deadline:
            return pids
        time.sleep(0.5)


def _stitched(out: Path, video) -> np.ndarray:
    files = [out / r["file"] for r in sorted(video.entry["chunks"].values(), key=lambda r: r["start"])]
    return np.concatenate([np.stack(list(iter_video_frames(f))) for f in files]).astype(int)


@pytest.fixture(scope="module")
def unchunked(comfy_server, batch_media, tmp_path_factory):
    """The batch unchunked, one worker, no Ray (the default path), in the session's ComfyUI."""
    out = tmp_path_factory.mktemp("unchunked")
    pool = LocalPool(server=comfy_server)
    videos = run_batch(_prompt(), _jobs(batch_media), out, pool, progress=False, keep_chunks=True)
    pool.close()
    return out, {v.job.video.name: v for v in videos}


@pytest.mark.server
def test_chunked_two_ray_workers_with_one_killed_equal_the_unchunked_run(comfy_server, batch_media, unchunked,
                                                                         tmp_path):
    ray = pytest.importorskip("ray")
    from talkinghead.scripts.batch.pool import RayPool

    base_out, base = unchunked
    assert all(v.status == "done" for v in base.values())
    pool = RayPool("local:2", str(comfy_server.models))
    killed, lost, folders = [], [], []

    def on_event(name, info):
        if name == "chunk_failed":
            lost.append(info["error"])
        if name == "chunk_done" and not killed and pool.in_flight:
            _, busy_actor = next(iter(pool.in_flight.values()))
            folders.append(ray.get(pool.workdirs[busy_actor])[1])
            os.kill(pool.pids[busy_actor], signal.SIGKILL)  # a worker dies mid-task
            killed.append(pool.pids[busy_actor])

    try:
        videos = run_batch(_prompt(), _jobs(batch_media), tmp_path, pool, chunk_seconds=0.6, context_seconds=0.3,
                           progress=False, keep_chunks=True, on_event=on_event)
    finally:
        pool.close()
    assert killed and any(isinstance(e, WorkerLost) for e in lost)
    assert not Path(folders[0]).exists()  # the killed worker's ComfyUI copy is removed
    assert not _processes_running_from(folders[0])  # and its server died with it
    by_name = {v.job.video.name: v for v in videos}
    assert len(by_name["long.mp4"].chunks) == 3 and all(v.status == "done" for v in videos)
    retried = [r for v in videos for r in v.entry["chunks"].values() if r["retries"]]
    assert retried and len({r["worker"] for v in videos for r in v.entry["chunks"].values()}) >= 2
    for name, video in by_name.items():
        chunked, whole = _stitched(tmp_path, video), _stitched(base_out, base[name])
        assert chunked.shape == whole.shape
        assert np.abs(chunked - whole).max() <= 1, name  # the frames the final video is encoded from
        out_frames, fps, out_audio = read_video(tmp_path / video.entry["output"]["file"])
        base_frames, _, base_audio = read_video(base_out / base[name].entry["output"]["file"])
        assert len(out_frames) == len(base_frames) == video.frames and abs(fps - 25.0) < 1e-6
        assert np.abs(out_frames.astype(int) - base_frames.astype(int)).max() <= 1, name  # the final videos, decoded
        assert np.array_equal(out_audio["waveform"].numpy(), base_audio["waveform"].numpy())
        speech = read_audio(batch_media / f"{Path(name).stem}.wav")
        assert abs(out_audio["waveform"].shape[-1] - video.frames * 640) <= 1  # the speech, fitted to the video
        report = json.loads((tmp_path / video.entry["report_file"]["file"]).read_text())
        assert report["frames"] == video.frames and report["chunks"] == len(video.chunks)
        assert report["faces_found"] + report["passed_through"] == video.frames
        assert speech["sample_rate"] == 16000
    assert by_name["long.mp4"].entry["report"]["passed_through"] == 2  # frames 20 and 21 have no face


@pytest.mark.server
def test_resume_after_an_interrupted_batch_recomputes_nothing_finished(comfy_server, batch_media, tmp_path, capsys):
    jobs = [j for j in _jobs(batch_media) if j.video.stem == "long"]
    pool = LocalPool(server=comfy_server)
    first = []

    def stop_after_two(name, info):
        if name == "chunk_done":
            first.append(info["chunk"].index)
            if len(first) == 2:
                raise KeyboardInterrupt  # what Ctrl-C does in the middle of a batch

    with pytest.raises(KeyboardInterrupt):
        run_batch(_prompt(), jobs, tmp_path, pool, chunk_seconds=0.6, context_seconds=0.3, progress=False,
                  on_event=stop_after_two)
    manifest = json.loads((tmp_path / "batch_manifest.json").read_text())
    [entry] = manifest["videos"].values()
    assert sorted(entry["chunks"]) == ["0", "1"] and "output" not in entry
    with pytest.raises(SystemExit, match="--resume"):  # nothing is overwritten without --resume
        run_batch(_prompt(), jobs, tmp_path, pool, chunk_seconds=0.6, context_seconds=0.3, progress=False)
    second = []
    videos = run_batch(_prompt(), jobs, tmp_path, pool, chunk_seconds=0.6, context_seconds=0.3, progress=False,
                       resume=True, on_event=lambda n, i: second.append(i["chunk"].index) if n == "chunk_done" else 0)
    assert second == [2] and videos[0].status == "done"
    output = tmp_path / videos[0].entry["output"]["file"]
    assert len(read_video(output)[0]) == 45
    # a third run with --resume finds everything done and verified: nothing runs, nothing is rewritten
    mtime = output.stat().st_mtime_ns
    third = []
    videos = run_batch(_prompt(), jobs, tmp_path, pool, chunk_seconds=0.6, context_seconds=0.3, progress=False,
                       resume=True, on_event=lambda n, i: third.append(n))
    assert third == [] and videos[0].status == "done before" and output.stat().st_mtime_ns == mtime
    pool.close()


def test_cli_refuses_missing_models_before_starting_anything(tmp_path, batch_media, capsys):
    rc = batch_main([str(WORKFLOWS / "diff2lip_api.json"), "--inputs", str(batch_media / "*.mp4"),
                     "--output-dir", str(tmp_path / "out"), "--models-dir", str(tmp_path / "models")])
    assert rc == 3 and "checkpoint.pt" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


class EchoPool:
    """A pool whose "workflow" returns its sub-clip's own frames unchanged (no ComfyUI): tests cutting, stitching,
    the manifest and failure handling on their own.  Chunks in ``fail`` always raise."""

    def __init__(self, folder: Path, fail=()):
        self.folder, self.fail, self.queue, self.size, self.runs = folder, set(fail), [], 1, []

    def idle(self):
        return 0 if self.queue else 1

    def busy(self):
        return bool(self.queue)

    def submit(self, key, task):
        self.queue.append((key, task))

    def wait(self):
        key, task = self.queue.pop(0)
        self.runs.append(key)
        if key[1] in self.fail:
            return key, None, RuntimeError("node 7 (Diff2LipLipSync) failed: boom")
        name, data = task["video"]
        tag = uuid.uuid4().hex
        src = self.folder / f"{tag}_{name}"
        src.write_bytes(data)
        frames = list(iter_video_frames(src))
        end = len(frames) if task["keep_count"] == 0 else task["keep_start"] + task["keep_count"]
        out = write_lossless(self.folder / f"{tag}_out.mkv", frames[task["keep_start"]:end], video_rate(src))
        return key, {"data": out.read_bytes(), "reports": [], "worker": "echo", "seconds": 0.0}, None


def test_stitched_chunks_are_the_input_frames_and_a_failing_chunk_fails_only_its_clip(tmp_path, batch_media):
    work = tmp_path / "echo"
    work.mkdir()
    pool = EchoPool(work, fail={1})
    jobs = _jobs(batch_media)
    videos = run_batch(_prompt(), jobs, tmp_path / "out", pool, chunk_seconds=0.6, context_seconds=0.3,
                       progress=False, retries=1, keep_chunks=True)
    by_name = {v.job.video.name: v for v in videos}
    long = by_name["long.mp4"]
    assert long.status == "failed" and "boom" in long.failed[1] and "output" not in long.entry
    assert pool.runs.count((long.key, 1)) == 2  # run, retried once, then reported
    for name in ("short1.mp4", "short2.mp4"):  # whole clips (shorter than a chunk) finish
        video = by_name[name]
        assert video.status == "done"
        original = np.stack(list(iter_video_frames(batch_media / name))).astype(int)
        assert np.array_equal(_stitched(tmp_path / "out", video), original)
    # the long clip's finished chunks are its own frames, exactly
    original = np.stack(list(iter_video_frames(batch_media / "long.mp4"))).astype(int)
    for index in ("0", "2"):
        record = long.entry["chunks"][index]
        got = np.stack(list(iter_video_frames(tmp_path / "out" / record["file"]))).astype(int)
        assert np.array_equal(got, original[record["start"]:record["end"]])
    # resuming with the failure gone computes only the failed chunk, then encodes the clip once
    pool = EchoPool(work)
    videos = run_batch(_prompt(), jobs, tmp_path / "out", pool, chunk_seconds=0.6, context_seconds=0.3,
                       progress=False, resume=True)
    assert pool.runs == [(long.key, 1)] and all(v.status in ("done", "done before") for v in videos)
    frames, fps, audio = read_video(tmp_path / "out" / "long.mp4")
    assert len(frames) == 45 and abs(audio["waveform"].shape[-1] - 45 * 640) <= 1


@pytest.mark.server
def test_cli_without_ray_runs_a_clip_in_its_own_comfyui(tmp_path, batch_media, diff2lip_fixtures, capsys):
    models = tmp_path / "models"
    (models / "diff2lip").mkdir(parents=True)
    (models / "diff2lip" / "tiny_unet.pt").symlink_to(diff2lip_fixtures / "tiny_unet.pt")
    out = tmp_path / "out"
    out.mkdir()
    (out / "short1.mp4").write_bytes(b"not ours")  # an existing file of the same name is never overwritten
    args = [str(WORKFLOWS / "diff2lip_api.json"), "--inputs", str(batch_media / "short1.*"), "--output-dir", str(out),
            "--models-dir", str(models)] + [a for s in TINY for a in ("--set", s)]
    assert batch_main(args) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert "chunks 1/1" in captured.err and "short1_0001.mp4" in captured.out  # progress bar, summary table
    assert (out / "short1.mp4").read_bytes() == b"not ours"
    frames, fps, audio = read_video(out / "short1_0001.mp4")
    assert len(frames) == 8 and abs(fps - 25.0) < 1e-6 and audio is not None
    report = json.loads((out / "short1_0001.json").read_text())
    assert report["frames"] == 8 and report["workers"] == ["local"] and report["faces_found"] == 8
