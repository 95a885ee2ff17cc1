"""Two gpuctl processes auto-downloading into one folder (the TUI beside `gpuctl watch`).

Both fetch the same checkpoint into the same `.part`; the first renames it into place.
The second found its `.part` gone (the demo said "auto-download failed: [Errno 2] No
such file or directory: '...ckpt.part' -> '...ckpt'"), or, for a folder, the place
taken. The copy the other one installed holds the verified bytes, so it is ours too;
anything else is said in words. Real files, real hashes.
"""

from __future__ import annotations

import asyncio

import pytest

from sessions.checkpoints.download import DownloadError, _install_verified
from sessions.checkpoints.verify import local_digest


def test_a_file_the_other_gpuctl_renamed_first_is_our_copy(tmp_path):
    final, part = tmp_path / "step_750.pt", tmp_path / "step_750.pt.part"
    final.write_bytes(b"weights" * 1000)  # the other gpuctl's rename already happened
    digest = local_digest(final)
    assert digest is not None
    asyncio.run(_install_verified(part, final, digest, replace_old=False))
    assert final.read_bytes() == b"weights" * 1000 and not part.exists()


def test_a_folder_the_other_gpuctl_installed_first_replaces_ours(tmp_path):
    final, part = tmp_path / "checkpoint-600", tmp_path / "checkpoint-600.part"
    for folder in (final, part):
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(b"\0" * 4096)
    digest = local_digest(part)
    assert digest is not None
    asyncio.run(_install_verified(part, final, digest, replace_old=False))
    assert local_digest(final) == digest and not part.exists()


def test_a_vanished_part_with_other_bytes_in_place_is_said_in_words(tmp_path):
    final, part = tmp_path / "step_750.pt", tmp_path / "step_750.pt.part"
    final.write_bytes(b"another version")
    with pytest.raises(DownloadError) as caught:
        asyncio.run(_install_verified(part, final, "0" * 64, replace_old=False))
    message = str(caught.value)
    assert "another gpuctl" in message and "run the same command again" in message
    assert "[Errno" not in message and final.read_bytes() == b"another version"
