"""The weights manifest and the `weights` command, against a local Range-capable HTTP server on 127.0.0.1."""
from __future__ import annotations

import hashlib
import json
import random
import re
import shlex
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from talkinghead.weights import fetch as fetch_module
from talkinghead.weights.fetch import fetch, find_models_dir, main, missing_message, missing_message_for_file
from talkinghead.weights.manifest import (CONSENT_FILE, DEFAULT_MANIFEST, KNOWN_TARGETS, WeightsError, expected_path,
                                          file_state, load_manifest, validate_manifest)


PAYLOAD = random.Random(6).randbytes(300_000)
OTHER_PAYLOAD = random.Random(7).randbytes(200_000)


class _Server:
    """Serves ``files`` (url path -> bytes) with Range support; records each GET and the body bytes it sent."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.truncate_at: dict[str, int] = {}  # path -> body bytes sent before closing early
        self.ignore_range: set[str] = set()
        self.requests: list[dict] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append({"path": self.path, "range": self.headers.get("Range"), "sent": 0})
                data = server.files.get(self.path)
                if data is None:
                    return self.send_error(404)
                start = self._range_start(data)
                if start is None:
                    return
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                sent = body[:server.truncate_at.get(self.path, len(body))]
                server.requests[-1]["sent"] = len(sent)  # before writing: the client may check as soon as it has read
                self.wfile.write(sent)

            def _range_start(self, data):
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if not match or self.path in server.ignore_range:
                    self.send_response(200)
                    return 0
                start = int(match.group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                return start

            def log_message(self, *args):
                pass

        return Handler


@pytest.fixture
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()
        thread.join(timeout=5)


def _entry(entry_id, filename, target, data=None, consent=(), download=True, sized=True):
    return {
        "id": entry_id, "title": f"test file {entry_id}", "filename": filename, "target": target,
        "url": "https://example.invalid/" + filename if download else None,
        "size": len(data) if data is not None and sized else None,
        "sha256": hashlib.sha256(data).hexdigest() if data is not None and sized else None,
        "licence": "test licence", "consent": list(consent), "features": ["test"], "optional": False,
        "download": download, "instructions": None if download else "get it by hand",
    }


@pytest.fixture
def test_manifest(tmp_path):
    data = {"entries": [
        _entry("alpha", "alpha.bin", "diff2lip/", PAYLOAD),
        _entry("unsized", "unsized.bin", "face_detection/", PAYLOAD, sized=False),
        _entry("gated", "gated.bin", "gagavatar/", OTHER_PAYLOAD, consent=["cc-by-nc-4.0"]),
        _entry("manual", "manual.pt", "flame/", consent=["flame"], download=False),
    ]}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def models(tmp_path):
    path = tmp_path / "ComfyUI" / "models"
    path.mkdir(parents=True)
    return path


def _fetch(manifest, models, server, *args):
    return main(["fetch", *args, "--models-dir", str(models), "--manifest", str(manifest), "--base-url", server.url])


def _trust(entry_id):
    """The flag an entry without a published sha256 needs (see test_bad_inputs for the refusal without it)."""
    return ["--trust-on-first-use"] if entry_id == "unsized" else []


def test_fetch_downloads_checks_sha256_and_renames(test_manifest, models, server, capsys):
    server.files["/alpha.bin"] = PAYLOAD
    assert _fetch(test_manifest, models, server, "alpha") == 0
    final = models / "diff2lip" / "alpha.bin"
    assert final.read_bytes() == PAYLOAD
    assert not (models / "diff2lip" / "alpha.bin.part").exists()
    assert server.requests == [{"path": "/alpha.bin", "range": None, "sent": len(PAYLOAD)}]
    out, err = capsys.readouterr()
    assert "downloaded" in out and "[weights] alpha: 0.3/0.3 MB (100%)" in err
    assert file_state("alpha", models, test_manifest, check_hash=True) == "verified"


@pytest.mark.parametrize("entry_id", ["alpha", "unsized"])
def test_resume_requests_only_the_missing_bytes(test_manifest, models, server, entry_id):
    entry = load_manifest(test_manifest)[entry_id]
    server.files[f"/{entry['filename']}"] = PAYLOAD
    final = expected_path(entry_id, models, test_manifest)
    final.parent.mkdir(parents=True)
    final.with_name(final.name + ".part").write_bytes(PAYLOAD[:123_457])
    assert _fetch(test_manifest, models, server, entry_id, *_trust(entry_id)) == 0
    assert server.requests == [{"path": f"/{entry['filename']}", "range": "bytes=123457-",
                                "sent": len(PAYLOAD) - 123_457}]
    assert final.read_bytes() == PAYLOAD


def test_server_ignoring_range_or_refusing_it_restarts_cleanly(test_manifest, models, server):
    server.files["/unsized.bin"] = PAYLOAD
    server.ignore_range.add("/unsized.bin")
    part = models / "face_detection" / "unsized.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 1000)
    assert _fetch(test_manifest, models, server, "unsized", "--trust-on-first-use") == 0
    assert (models / "face_detection" / "unsized.bin").read_bytes() == PAYLOAD
    assert [r["sent"] for r in server.requests] == [len(PAYLOAD)]

    # A .part longer than the remote file (size unknown locally, so no lock record either): 416, then one full download.
    server.ignore_range.clear()
    (models / "face_detection" / "unsized.bin").unlink()
    (models / "talkinghead_weights.lock.json").unlink()
    part.write_bytes(PAYLOAD + b"junk")
    assert _fetch(test_manifest, models, server, "unsized", "--trust-on-first-use") == 0
    assert (models / "face_detection" / "unsized.bin").read_bytes() == PAYLOAD
    assert [r["range"] for r in server.requests[1:]] == [f"bytes={len(PAYLOAD) + 4}-", None]


@pytest.mark.parametrize("entry_id", ["alpha", "unsized"])
def test_truncated_response_fails_without_final_file_then_resumes(test_manifest, models, server, capsys, entry_id):
    filename = load_manifest(test_manifest)[entry_id]["filename"]
    server.files[f"/{filename}"] = PAYLOAD
    server.truncate_at[f"/{filename}"] = 100_000
    final = expected_path(entry_id, models, test_manifest)
    assert _fetch(test_manifest, models, server, entry_id, *_trust(entry_id)) == 1
    assert "connection closed after 100000 of 300000 bytes" in capsys.readouterr().err
    assert not final.exists()
    assert final.with_name(final.name + ".part").stat().st_size == 100_000
    assert file_state(entry_id, models, test_manifest) == "partial"

    server.truncate_at.clear()
    assert _fetch(test_manifest, models, server, entry_id, *_trust(entry_id)) == 0
    assert server.requests[-1]["range"] == "bytes=100000-" and server.requests[-1]["sent"] == 200_000
    assert final.read_bytes() == PAYLOAD


def test_checksum_mismatch_deletes_download_and_existing_files_are_never_overwritten(test_manifest, models, server,
                                                                                      capsys):
    corrupted = bytearray(PAYLOAD)
    corrupted[150_000] ^= 0xFF
    server.files["/alpha.bin"] = bytes(corrupted)
    final = models / "diff2lip" / "alpha.bin"
    assert _fetch(test_manifest, models, server, "alpha") == 1
    assert "sha256 mismatch" in capsys.readouterr().err
    assert not final.exists() and not final.with_name("alpha.bin.part").exists()

    server.files["/alpha.bin"] = PAYLOAD[:-5]  # another file at the address: refused from its announced size
    assert _fetch(test_manifest, models, server, "alpha") == 1
    assert "the server's file is 299995 bytes but the manifest expects 300000" in capsys.readouterr().err
    assert not final.exists() and not final.with_name("alpha.bin.part").exists()

    final.write_bytes(PAYLOAD)  # a good file in place: a fetch must not even contact the server
    requests_before = len(server.requests)
    assert _fetch(test_manifest, models, server, "alpha") == 0
    assert "already present" in capsys.readouterr().out
    assert final.read_bytes() == PAYLOAD and len(server.requests) == requests_before

    final.write_bytes(PAYLOAD[:-1])  # a wrong file in place is reported and left alone
    assert _fetch(test_manifest, models, server, "alpha") == 1
    assert "exists but is wrong-size; it was left untouched" in capsys.readouterr().err
    assert final.read_bytes() == PAYLOAD[:-1] and len(server.requests) == requests_before


def test_consent_is_required_once_and_manual_entries_are_refused(test_manifest, models, server, capsys):
    server.files["/gated.bin"] = OTHER_PAYLOAD
    assert _fetch(test_manifest, models, server, "gated") == 1
    assert "--accept-licence cc-by-nc-4.0" in capsys.readouterr().err
    assert server.requests == [] and not (models / "gagavatar").exists()
    with pytest.raises(WeightsError, match="--accept-licence cc-by-nc-4.0"):
        fetch(["alpha", "gated"], models, manifest=test_manifest, base_url=server.url)
    assert server.requests == []

    assert _fetch(test_manifest, models, server, "gated", "--accept-licence", "cc-by-nc-4.0") == 0
    assert json.loads((models / CONSENT_FILE).read_text())["accepted"] == ["cc-by-nc-4.0"]
    (models / "gagavatar" / "gated.bin").unlink()
    assert _fetch(test_manifest, models, server, "gated") == 0  # consent recorded for this models dir
    assert len(server.requests) == 2

    assert _fetch(test_manifest, models, server, "manual", "--accept-licence", "flame") == 1
    assert "get it by hand" in capsys.readouterr().err and len(server.requests) == 2


def test_list_and_verify_report_each_state(test_manifest, models, capsys):
    (models / "diff2lip").mkdir()
    (models / "diff2lip" / "alpha.bin").write_bytes(PAYLOAD[:-10])
    (models / "face_detection").mkdir()
    (models / "face_detection" / "unsized.bin").write_bytes(b"anything")
    (models / "gagavatar").mkdir()
    (models / "gagavatar" / "gated.bin.part").write_bytes(b"abc")
    args = ["--models-dir", str(models), "--manifest", str(test_manifest)]
    assert main(["list", *args]) == 0
    states = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]}
    assert states == {"alpha": "wrong-size", "unsized": "present", "gated": "partial", "manual": "missing"}

    corrupted = bytearray(PAYLOAD)
    corrupted[0] ^= 1
    (models / "diff2lip" / "alpha.bin").write_bytes(bytes(corrupted))
    assert file_state("alpha", models, test_manifest) == "present"  # same size: list does not hash
    assert main(["verify", *args]) == 1
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["alpha"][1] == "bad-checksum" and rows["alpha"][3] == hashlib.sha256(corrupted).hexdigest()
    assert rows["unsized"][1:4:2] == ["present", hashlib.sha256(b"anything").hexdigest()]
    (models / "diff2lip" / "alpha.bin").write_bytes(PAYLOAD)
    assert main(["verify", *args, "alpha"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[1] == "verified"


def test_missing_message_names_file_folder_and_a_working_command(test_manifest, models, server):
    server.files["/gated.bin"] = OTHER_PAYLOAD
    message = missing_message("gated", models, test_manifest)
    folder = models / "gagavatar"
    assert "gated.bin" in message and str(folder) in message
    command = message.split("Download it with: ")[1]
    launcher = fetch_module.PACK_DIR / "scripts" / "talkinghead.py"
    assert launcher.is_file() and command.startswith(f"{sys.executable} {launcher} weights ")  # runs as printed
    argv = shlex.split(command.split(" weights ", 1)[1])
    assert argv == ["fetch", "gated", "--accept-licence", "cc-by-nc-4.0", "--models-dir", str(models)]
    run = subprocess.run([*shlex.split(command), "--manifest", str(test_manifest), "--base-url", server.url],
                         capture_output=True, text=True, timeout=120)  # the printed command, as a user pastes it
    assert run.returncode == 0, run.stderr
    assert (folder / "gated.bin").read_bytes() == OTHER_PAYLOAD

    manual = missing_message("manual", models, test_manifest)
    assert "manual.pt" in manual and "get it by hand" in manual and "weights fetch" not in manual
    assert missing_message_for_file("gated.bin", "gagavatar", models, test_manifest) == message
    assert "alpha.bin" in missing_message_for_file("other.bin", "diff2lip", models, test_manifest)


def test_models_dir_is_found_from_the_pack_location(tmp_path, monkeypatch, capsys):
    comfy = tmp_path / "ComfyUI"
    (comfy / "models").mkdir(parents=True)
    (comfy / "custom_nodes" / "my_pack").mkdir(parents=True)
    assert find_models_dir(comfy / "custom_nodes" / "my_pack") == comfy / "models"
    elsewhere = tmp_path / "src" / "pack"
    elsewhere.mkdir(parents=True)
    (comfy / "custom_nodes" / "linked_pack").symlink_to(elsewhere)  # a symlinked pack still finds ComfyUI
    assert find_models_dir(comfy / "custom_nodes" / "linked_pack") == comfy / "models"
    assert find_models_dir(elsewhere) is None

    monkeypatch.setattr(fetch_module, "PACK_DIR", elsewhere)
    assert main(["list"]) == 2
    assert "pass --models-dir" in capsys.readouterr().err


def test_real_manifest_is_valid_and_never_downloads_flame():
    data = json.loads(DEFAULT_MANIFEST.read_text())
    assert validate_manifest(data) == []
    entries = load_manifest()
    assert {"diff2lip", "s3fd", "fan_2d", "gagavatar", "flame_with_eye", "track_vgghead", "track_landmarks",
            "track_matting", "track_emica", "track_scrfd", "realesrgan_x2plus", "realesrgan_x4plus"} <= set(entries)
    for entry in entries.values():
        assert entry["target"] in KNOWN_TARGETS
        assert entry["download"] == (entry["url"] is not None)
        if entry["download"]:
            assert entry["url"].startswith("https://") and entry["url_source"]
        if "flame" in entry["consent"] or "FLAME" in entry["filename"]:
            assert not entry["download"] and entry["url"] is None
    flame = entries["flame_with_eye"]
    assert flame["registration_url"] == "https://flame.is.tue.mpg.de" and flame["converter_input"] == "generic_model.pkl"
    assert {entries[i]["archive"] for i in entries if i.startswith("track_")} == {"gagavatar_track_resources"}


def test_manifest_hashes_name_their_source():
    """A sha256 is never invented: every pinned hash says where it was published."""
    hashed = [entry for entry in load_manifest().values() if entry["sha256"]]
    assert hashed
    for entry in hashed:
        assert "sha256" in entry["url_source"], entry["id"]


def test_validator_rejects_broken_manifests():
    good = _entry("x", "x.bin", "diff2lip/", b"data")
    assert validate_manifest({"entries": [good]}) == []
    flame = {**good, "consent": ["flame"]}
    bad_target = {**good, "id": "y", "filename": "y.bin", "target": "checkpoints/"}
    duplicate = {**good, "sha256": "ABC"}
    problems = validate_manifest({"entries": [flame, bad_target, duplicate]})
    assert any("FLAME consent must not be downloadable" in p for p in problems)
    assert any("target 'checkpoints/'" in p for p in problems)
    assert any("sha256 must be 64" in p for p in problems)
    assert "duplicate id 'x'" in problems and "duplicate filename 'x.bin'" in problems
    with pytest.raises(ValueError, match="invalid weights manifest"):
        load_manifest({"entries": [flame]})
