"""The local gateway folder: `current` switches in one rename and never points at a deleted or
half-written folder, even when the same version is installed again."""

import os

from routeiq_assets.deployment.gateway import install_local


def _version(root, name, manifest, weights):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(manifest)
    (folder / "weights.npz").write_bytes(weights)
    return folder


def test_reinstalling_keeps_the_served_folder(tmp_path):
    dest = tmp_path / "gateway"
    first = _version(tmp_path / "src", "a", '{"version": "1"}', b"one")
    current = install_local(first, dest, "1")
    assert os.readlink(current) == "1" and (current / "weights.npz").read_bytes() == b"one"
    inode = (dest / "1" / "weights.npz").stat().st_ino

    # the same verified bytes again (a deploy rerun): nothing is deleted or copied
    again = install_local(_version(tmp_path / "src", "b", '{"version": "1"}', b"one"), dest, "1")
    assert os.readlink(again) == "1" and (dest / "1" / "weights.npz").stat().st_ino == inode

    # different bytes under the same version number: a fresh folder, the old one untouched
    other = install_local(
        _version(tmp_path / "src", "c", '{"version": "1", "x": 2}', b"two"), dest, "1"
    )
    assert os.readlink(other) == "1.1" and (other / "weights.npz").read_bytes() == b"two"
    assert (dest / "1" / "weights.npz").read_bytes() == b"one"

    nxt = install_local(_version(tmp_path / "src", "d", '{"version": "2"}', b"three"), dest, "2")
    assert os.readlink(nxt) == "2" and not list(dest.glob(".*"))  # no staging leftovers
