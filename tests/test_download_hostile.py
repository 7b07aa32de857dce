"""Hostile mirrors and archives (127.0.0.1 only, archives generated here): symbolic link chains out of the data
root, --from-dir links, zip and tar bombs, mirrors without a checksum (bodies cut short, resumes without a
validator, truncated archives, redirects), trickling servers, and a full disk while unpacking."""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import json
import logging
import os
import re
import struct
import tarfile
import time
import zipfile

import pytest
import requests

from descbench.data import download, sources
from descbench.data.download import HttpOptions
from descbench.data.sources import Checksum, HPatchesSource, Mirror, RemoteFile, UBCSetSource
from descbench.errors import DescbenchError
from loopback import LoopbackServer, Route

FAST = HttpOptions(retries=2, backoff_s=0.01, timeout_s=10)


class LoopbackTLS(requests.adapters.HTTPAdapter):
    """Stands in for TLS: requests to https://secure.test go to the loopback server, and keep their https URL."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port

    def send(self, request, **kwargs):
        original = request.url
        request.url = original.replace("https://secure.test", f"http://127.0.0.1:{self.port}", 1)
        try:
            response = super().send(request, **kwargs)
        finally:
            request.url = original
        response.url = original
        return response


# --------------------------------------------------------------------------------------- generated data

def md5(data: bytes) -> Checksum:
    return Checksum("md5", hashlib.md5(data).hexdigest(), "test")


def zip_bytes(entries: list[tuple[str, bytes | str]]) -> bytes:
    """``entries``: (name, bytes) for files, (name, "->target") for symbolic links, in archive order."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            if isinstance(data, str):
                info = zipfile.ZipInfo(name)
                info.external_attr = 0o120777 << 16
                zf.writestr(info, data.removeprefix("->"))
            else:
                zf.writestr(name, data)
    return buffer.getvalue()


def tar_bytes(entries: list[tuple[str, bytes | str]], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tf:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if isinstance(data, str):
                info.type, info.linkname = tarfile.SYMTYPE, data.removeprefix("->")
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def hpatches_entries(sequences=("i_one", "v_two"), skip: str | None = None) -> list[tuple[str, bytes]]:
    return [(f"{seq}/{image}", b"\x89PNG" + f"{seq}/{image}".encode()) for seq in sequences
            for image in sources.HPATCHES_IMAGE_FILES if f"{seq}/{image}" != skip]


def ubc_entries() -> list[tuple[str, bytes]]:
    return [("info.txt", "".join(f"{i // 3} 0\n" for i in range(300)).encode()),
            ("patches0000.bmp", b"BM" + bytes(range(256)) * 2),
            ("patches0001.bmp", b"BM" + bytes(range(256)) * 2),
            (sources.TEST_PAIRS_FILE, "".join(f"{i} {i // 3} 0 {i + 1} 0 0 0\n" for i in range(10)).encode())]


def tiny_ubc(server: LoopbackServer, archive: bytes, *, checksum: str | None = "md5", **route) -> UBCSetSource:
    server.routes["/tiny.zip"] = Route([archive], **route)
    mirror = Mirror(server.url("/tiny.zip"), md5(archive) if checksum else None)
    return UBCSetSource("tiny", RemoteFile("tiny", (mirror,)), n_patches=300, n_test_pairs=10)


def hpatches_source(server: LoopbackServer, archive: bytes, filename: str = "hpatches-release.zip") -> HPatchesSource:
    """Like the catalogue's: one mirror without a checksum."""
    server.routes["/" + filename] = Route([archive])
    return HPatchesSource(RemoteFile("hpatches-release", (Mirror(server.url("/" + filename)),)), n_sequences=2)


@functools.cache
def zip_bomb() -> bytes:
    """The issue's bomb: 400 MB of zeros in a 408 KB zip, next to a normal HPatches-like layout."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in hpatches_entries(skip="i_one/ref.png"):
            zf.writestr(name, data)
        with zf.open("i_one/ref.png", "w") as f:
            for _ in range(400):
                f.write(bytes(1 << 20))
    return buffer.getvalue()


class WriteSpy:
    """Stands in for ``open`` in a module: counts the bytes written to files opened for writing and, with
    ``fail_after``, raises ENOSPC once that many were written."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.written, self.fail_after, self.opened = 0, fail_after, 0

    def __call__(self, file, mode="r", *args, **kwargs):
        real = open(file, mode, *args, **kwargs)  # noqa: SIM115 (closed by the caller)
        if not any(c in mode for c in "wax"):
            return real
        self.opened += 1
        spy = self

        class Writer(io.RawIOBase):
            def write(self, data) -> int:
                if spy.fail_after is not None and spy.written + len(data) > spy.fail_after:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
                spy.written += len(data)
                return real.write(data)

            def writable(self) -> bool:
                return True

            def close(self) -> None:
                real.close()
                super().close()

        return Writer()


def staged_files(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# -------------------------------------------------------------------------- 1. links out of the data root

CHAIN = "->y/i_one/y/../../secret.png"  # with i_one/y -> "..": target/, then ../.. = DATA/


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
@pytest.mark.parametrize("order", ["link-first", "chain-first"])
def test_symlink_chain_out_of_the_data_root_is_refused(server, tmp_path, kind, order):
    root = tmp_path / "data"
    root.mkdir()
    (root / "secret.png").write_bytes(b"\x89PNG outside the data root")
    links = [("i_one/y", "->.."), ("i_one/ref.png", CHAIN)]
    entries = hpatches_entries(skip="i_one/ref.png") + (links if order == "link-first" else links[::-1])
    filename = f"hpatches-release.{kind}"
    source = hpatches_source(server, zip_bytes(entries) if kind == "zip" else tar_bytes(entries), filename)

    with pytest.raises(DescbenchError) as err:
        download.download_hpatches(source, root, http=FAST)

    message = str(err.value)
    assert "refusing to extract member 'i_one/" in message and "symbolic link to" in message
    assert "only links to a relative path without '..' are kept" in message
    assert not (root / "raw" / "hpatches-release").exists()
    assert (root / "secret.png").read_bytes() == b"\x89PNG outside the data root"
    # no checksum vouches for the archive: it is not kept for reuse
    assert "deleted" in message and not list((root / "raw" / "archives").iterdir())


def test_symlink_chain_in_a_zip_is_refused_by_extract_archive(tmp_path):
    (tmp_path / "secret.png").write_bytes(b"secret")
    archive = tmp_path / "a.zip"
    archive.write_bytes(zip_bytes([("i_one/ref.png", "->y/i_one/y/../../secret.png"), ("i_one/y", "->..")]))
    with pytest.raises(DescbenchError, match=r"refusing to extract member 'i_one/ref.png': it is a symbolic link"):
        download.extract_archive(archive, tmp_path / "target", validate=lambda folder: "unused")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "secret.png"]


def test_links_into_the_tree_still_work_in_any_order(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(zip_bytes([("top/alias", "->sub/inner/x.txt"), ("top/sub/inner", "->data"),
                                   ("top/sub/data/x.txt", b"1")]))
    download.extract_archive(archive, tmp_path / "target", validate=lambda folder: "ok")
    assert (tmp_path / "target" / "alias").read_bytes() == b"1"


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
@pytest.mark.parametrize("entries, member, reason", [
    ([("d", "->sub"), ("d/x.txt", b"1")], "d/x.txt", "written through the symbolic link 'd'"),
    ([("d/x.txt", b"1"), ("d", "->sub")], "d/x.txt", "written through the symbolic link 'd'"),
    ([("a", "->b"), ("a", b"1")], "a", "appears twice, once as a symbolic link"),
], ids=["link-then-member", "member-then-link", "duplicate"])
def test_members_written_through_links_are_refused(tmp_path, kind, entries, member, reason):
    archive = tmp_path / f"a.{kind}"
    archive.write_bytes(zip_bytes(entries) if kind == "zip" else tar_bytes(entries))
    with pytest.raises(download.ArchiveError, match=f"refusing to extract member '{member}': it .*{reason}"):
        download.extract_archive(archive, tmp_path / "target", validate=lambda folder: "unused")
    assert sorted(p.name for p in tmp_path.iterdir()) == [archive.name]


def test_links_are_checked_again_on_disk(tmp_path):
    (tmp_path / "tree" / "d").mkdir(parents=True)
    os.symlink("../../outside", tmp_path / "tree" / "d" / "l")
    with pytest.raises(download.ArchiveError, match=r"member 'd/l': it is a symbolic link to '../../outside'"):
        download._check_links_inside(tmp_path / "a.zip", tmp_path / "tree")


def test_from_dir_link_to_outside_is_not_used(tmp_path):
    archive = zip_bytes(ubc_entries())
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "tiny.zip").write_bytes(archive)
    mine = tmp_path / "mine"
    mine.mkdir()
    os.symlink("../elsewhere/tiny.zip", mine / "tiny.zip")
    source = UBCSetSource("tiny", RemoteFile("tiny", (Mirror("http://127.0.0.1:9/tiny.zip", md5(archive)),)),
                          n_patches=300, n_test_pairs=10)

    with pytest.raises(DescbenchError) as err:
        download.download_ubc_set(source, tmp_path / "data", from_dir=mine)

    message = str(err.value)
    elsewhere = (tmp_path / "elsewhere").resolve()
    assert f"{mine / 'tiny.zip'} is a symbolic link" in message and str(elsewhere / "tiny.zip") in message
    assert f"Pass --from-dir {elsewhere}" in message
    assert not (tmp_path / "data" / "raw" / "ubc" / "tiny").exists()

    (mine / "tiny.zip").unlink()  # a link that stays inside the folder is fine
    (mine / "real").mkdir()
    (mine / "real" / "copy.zip").write_bytes(archive)
    os.symlink("real/copy.zip", mine / "tiny.zip")
    result = download.download_ubc_set(source, tmp_path / "data", from_dir=mine)
    assert (result.folder / "info.txt").is_file()


def test_from_dir_files_copied_in_are_read_through_their_link_and_the_copy_verified(tmp_path):
    data = b"s,idx\ni_one,3\n"
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "t.csv").write_bytes(data)
    (tmp_path / "elsewhere" / "bad.csv").write_bytes(b"tampered")
    mine = tmp_path / "mine"
    (mine / "a").mkdir(parents=True)
    os.symlink("../elsewhere/bad.csv", mine / "t.csv")  # tried first, does not verify
    os.symlink("../../elsewhere/t.csv", mine / "a" / "t.csv")
    remote = RemoteFile("t.csv", (Mirror("http://127.0.0.1:9/t.csv", Checksum("md5", hashlib.md5(data).hexdigest(),
                                                                               "test")),))
    dest = tmp_path / "dest"
    result = download.fetch(remote, dest, from_dir=mine, copy_from_dir=True, record_meta=False)
    assert result.path == dest / "t.csv" and not result.path.is_symlink() and result.path.read_bytes() == data
    assert sorted(p.name for p in dest.iterdir()) == ["t.csv"]

    only_bad = tmp_path / "only-bad"
    only_bad.mkdir()
    os.symlink("../elsewhere/bad.csv", only_bad / "t.csv")
    with pytest.raises(DescbenchError, match="checksum mismatch"):
        download.fetch(remote, tmp_path / "dest2", from_dir=only_bad, copy_from_dir=True, record_meta=False)
    assert list((tmp_path / "dest2").iterdir()) == []


# --------------------------------------------------------------------------------------- 3. bombs

def test_zip_bomb_is_refused_before_anything_is_written(server, tmp_path, monkeypatch):
    source = hpatches_source(server, zip_bomb())
    spy = WriteSpy()
    monkeypatch.setattr(download, "open", spy, raising=False)

    with pytest.raises(DescbenchError) as err:
        download.download_hpatches(source, tmp_path, http=FAST)

    message = str(err.value)
    assert "i_one/ref.png" in message and "zip bomb" in message and "419.4 MB" in message
    assert spy.written < 1 << 20  # only the download itself, 408 KB
    assert not (tmp_path / "raw" / "hpatches-release").exists()


def test_zip_bomb_in_extract_archive_writes_nothing(tmp_path, monkeypatch):
    archive = tmp_path / "bomb.zip"
    archive.write_bytes(zip_bomb())
    spy = WriteSpy()
    monkeypatch.setattr(download, "open", spy, raising=False)
    with pytest.raises(download.ArchiveError, match=r"refusing to extract member 'i_one/ref.png'.*over 100 to 1"):
        download.extract_archive(archive, tmp_path / "target", validate=lambda folder: "unused")
    assert spy.written == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["bomb.zip"]


def test_total_size_is_capped_by_the_dataset(tmp_path, monkeypatch):
    archive = tmp_path / "a.zip"
    archive.write_bytes(zip_bytes([(f"f{i}.bin", os.urandom(200_000)) for i in range(3)]))  # 600 KB, ratio 1
    spy = WriteSpy()
    monkeypatch.setattr(download, "open", spy, raising=False)
    with pytest.raises(download.ArchiveError, match=r"members add up to 600.0 KB \(at least\), more than the "
                                                    r"500.0 KB the dataset can take"):
        download.extract_archive(archive, tmp_path / "target", validate=lambda folder: "unused",
                                 limits=download.ExtractLimits(max_bytes=500_000))
    assert spy.written == 0


def test_zip_header_understating_the_size_is_not_trusted(tmp_path, monkeypatch):
    data = bytes(10 << 20)
    raw = bytearray(zip_bytes([("big.bin", data)]))
    central = raw.index(b"PK\x01\x02")
    struct.pack_into("<I", raw, central + 24, 1000)  # the central directory claims 1,000 bytes
    struct.pack_into("<I", raw, 22, 1000)  # and so does the local header
    archive = tmp_path / "liar.zip"
    archive.write_bytes(bytes(raw))
    spy = WriteSpy()
    monkeypatch.setattr(download, "open", spy, raising=False)
    with pytest.raises(download.ArchiveError, match=r"member 'big.bin' cannot be read .*Bad CRC-32"):
        download.extract_archive(archive, tmp_path / "target", validate=lambda folder: "unused")
    assert spy.written <= 1000


def test_tar_bomb_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(tar_bytes([("ok.txt", b"1"), ("zeros.bin", bytes(50 << 20))]))
    assert archive.stat().st_size < 100_000
    spy = WriteSpy()
    monkeypatch.setattr(tarfile, "bltn_open", spy)
    with pytest.raises(download.ArchiveError, match=r"refusing to extract member 'zeros.bin'.*tar bomb"):
        download.extract_archive(archive, tmp_path / "target", validate=lambda folder: "unused")
    assert spy.opened == 0
    with pytest.raises(download.ArchiveError, match=r"add up to 52.4 MB"):
        download.safe_extract(archive, tmp_path, limits=download.ExtractLimits(max_bytes=1 << 20, max_ratio=1e6))
    assert spy.opened == 0


def test_caps_come_from_the_known_dataset_sizes():
    liberty = download.ubc_unpack_limits(sources.UBC_SETS["liberty"])
    assert 2.0e9 < liberty.max_bytes < 6e9  # 1,759 tiles of 1,049,654 bytes unpack to about 1.85 GB
    release = download.hpatches_unpack_limits(sources.HPATCHES)
    assert 4.3e9 < release.max_bytes < 16e9  # the release is 4.2 GB
    assert download.ExtractLimits().max_bytes >= 32 << 30


# ----------------------------------------------------------------------------- 4. mirrors without a checksum

@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_body_cut_short_without_content_length_is_deleted(server, tmp_path, kind):
    entries = hpatches_entries()
    archive = zip_bytes(entries) if kind == "zip" else tar_bytes(entries)
    server.routes[f"/hp.{kind}"] = Route([archive[: len(archive) * 2 // 3], archive], length=False)
    remote = RemoteFile("hpatches-release", (Mirror(server.url(f"/hp.{kind}")),))

    with pytest.raises(DescbenchError) as err:
        download.fetch(remote, tmp_path, http=FAST)

    message = str(err.value)
    assert f"hp.{kind}" in message and ("damaged or truncated" in message)
    assert "the download was deleted and will be downloaded again" in message
    assert list(tmp_path.iterdir()) == []  # no archive, no meta.json, no partial file

    result = download.fetch(remote, tmp_path, http=FAST)
    assert result.path.read_bytes() == archive and not result.pinned


def test_resume_without_validator_starts_over_instead_of_splicing(server, tmp_path):
    old, new = os.urandom(60_000), os.urandom(60_000)
    server.routes["/f.bin"] = Route([old, new], etag=False, plan=["drop:20000"])
    result = download.fetch(RemoteFile("f", (Mirror(server.url("/f.bin")),)), tmp_path, http=FAST)
    assert result.path.read_bytes() == new
    assert [r[1] for r in server.hits("/f.bin")] == [None, None]  # no Range without ETag or Last-Modified


def test_resumed_206_from_another_version_is_dropped(server, tmp_path):
    old, new = os.urandom(60_000), os.urandom(60_000)
    server.routes["/f.bin"] = Route([old, new], honour_if_range=False, plan=["drop:20000"])
    result = download.fetch(RemoteFile("f", (Mirror(server.url("/f.bin")),)), tmp_path, http=FAST)
    assert result.path.read_bytes() == new
    etag_old = '"' + hashlib.sha1(old).hexdigest() + '"'
    assert server.hits("/f.bin") == [("/f.bin", None, None), ("/f.bin", "bytes=20000-", etag_old),
                                     ("/f.bin", None, None)]


def test_truncated_archive_recorded_earlier_is_deleted_and_downloaded_again(server, tmp_path):
    archive = zip_bytes(ubc_entries())
    source = tiny_ubc(server, archive, checksum=None)
    archives = tmp_path / "raw" / "archives"
    archives.mkdir(parents=True)
    truncated = archive[:-200]
    (archives / "tiny.zip").write_bytes(truncated)  # what an earlier run accepted and recorded as verified
    (archives / "tiny.zip.meta.json").write_text(json.dumps({
        "file": "tiny.zip", "path": str(archives / "tiny.zip"), "origin": server.url("/tiny.zip"),
        "sha256": hashlib.sha256(truncated).hexdigest(), "pinned": False,
        "verified_by": "no published checksum; sha256 recorded"}))

    with pytest.raises(DescbenchError) as err:
        download.download_ubc_set(source, tmp_path, http=FAST)

    message = str(err.value)
    assert "tiny.zip: not a readable zip file" in message
    assert "it was deleted (and tiny.zip.meta.json); run the command again to download it afresh" in message
    assert list(archives.iterdir()) == [] and server.requests == []

    result = download.download_ubc_set(source, tmp_path, http=FAST)
    assert (archives / "tiny.zip").read_bytes() == archive and len(server.requests) == 1
    assert result.summary == "300 patches in 2 tiles, 10 test pairs"


def test_final_url_after_redirects_is_recorded(server, tmp_path):
    data = os.urandom(5000)
    server.routes["/latest/x.bin"] = Route(redirect="/v2/x.bin")
    server.routes["/v2/x.bin"] = Route([data])
    result = download.fetch(RemoteFile("x", (Mirror(server.url("/latest/x.bin")),)), tmp_path, http=FAST)
    meta = json.loads((tmp_path / "x.bin.meta.json").read_text())
    assert meta["origin"] == server.url("/latest/x.bin") and meta["final_url"] == server.url("/v2/x.bin")
    assert result.final_url == server.url("/v2/x.bin") and result.path.read_bytes() == data


def test_https_to_http_redirect_is_refused(server, tmp_path):
    data = os.urandom(5000)
    server.routes["/down/x.bin"] = Route(redirect=server.url("/x.bin"))
    server.routes["/up/x.bin"] = Route(redirect="https://secure.test/x.bin")
    server.routes["/x.bin"] = Route([data])
    session = requests.Session()
    session.mount("https://secure.test", LoopbackTLS(server.port))

    with pytest.raises(DescbenchError) as err:
        download.fetch(RemoteFile("x", (Mirror("https://secure.test/down/x.bin"),)), tmp_path, http=FAST,
                       session=session)
    assert (f"https://secure.test/down/x.bin redirects to {server.url('/x.bin')}, from https to plain http; "
            "refusing the downgrade") in str(err.value)
    assert server.hits("/x.bin") == [] and len(server.hits("/down/x.bin")) == 1  # not followed, not retried

    result = download.fetch(RemoteFile("x", (Mirror("https://secure.test/up/x.bin"),)), tmp_path, http=FAST,
                            session=session)
    assert result.final_url == "https://secure.test/x.bin" and result.path.read_bytes() == data


# ------------------------------------------------------------------------------------ 5. trickling servers

def test_trickling_mirror_is_given_up_for_the_next(server, tmp_path, caplog):
    data = os.urandom(5000)
    server.routes["/slow/x.bin"] = Route([data], plan=["trickle"])
    server.routes["/fast/x.bin"] = Route([data])
    remote = RemoteFile("x", (Mirror(server.url("/slow/x.bin"), md5(data)),
                              Mirror(server.url("/fast/x.bin"), md5(data))))
    start = time.monotonic()

    with caplog.at_level(logging.WARNING, logger="descbench.data.download"):
        result = download.fetch(remote, tmp_path, http=HttpOptions(retries=2, backoff_s=0.01, timeout_s=5,
                                                                   stall_window_s=0.3, stall_min_bytes=1000))

    assert time.monotonic() - start < 5
    assert result.origin == server.url("/fast/x.bin") and result.path.read_bytes() == data
    assert f"{server.url('/slow/x.bin')} stalled" in caplog.text
    assert len(server.hits("/slow/x.bin")) == 1  # a stall is not retried on the same mirror


def test_trickling_only_mirror_fails_with_a_clear_error(server, tmp_path):
    server.routes["/slow/x.bin"] = Route(plan=["trickle"])
    with pytest.raises(DescbenchError) as err:
        download.fetch(RemoteFile("x", (Mirror(server.url("/slow/x.bin")),)), tmp_path,
                       http=HttpOptions(retries=2, backoff_s=0.01, timeout_s=5, stall_window_s=0.3,
                                        stall_min_bytes=1000))
    message = str(err.value)
    assert f"{server.url('/slow/x.bin')} stalled" in message and "fewer than the 1,000 bytes per 0.3 s" in message
    assert "could not get a verified copy of x from any mirror" in message


def test_stall_defaults_are_lenient():
    options = HttpOptions()
    assert options.stall_window_s >= 30 and options.stall_min_bytes <= 256 * 1024


# ------------------------------------------------------------------------------------ 6. a full disk

@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_disk_full_while_unpacking_keeps_the_archive(server, tmp_path, monkeypatch, kind):
    entries = hpatches_entries()
    archive = zip_bytes(entries) if kind == "zip" else tar_bytes(entries)
    source = hpatches_source(server, archive, f"hpatches-release.{kind}")  # no checksum: the risky case
    spy = WriteSpy(fail_after=100)
    if kind == "zip":
        download.fetch(source.archive, tmp_path / "raw" / "archives", http=FAST)  # the download has room
        monkeypatch.setattr(download, "open", spy, raising=False)
    else:
        monkeypatch.setattr(tarfile, "bltn_open", spy)

    with pytest.raises(download.DiskFullError) as err:
        download.download_hpatches(source, tmp_path, http=FAST)

    message = str(err.value)
    assert f"disk full at {tmp_path / 'raw'} while unpacking" in message and "needs about" in message
    assert "The archive was kept" in message and "damaged, delete it" not in message
    archives = tmp_path / "raw" / "archives"
    assert (archives / f"hpatches-release.{kind}").read_bytes() == archive
    assert (archives / f"hpatches-release.{kind}.meta.json").is_file()
    assert not (tmp_path / "raw" / "hpatches-release").exists()

    monkeypatch.undo()
    result = download.download_hpatches(source, tmp_path, http=FAST)
    assert result.files[0].reused and len(server.requests) == 1  # unpacked from the kept archive


def test_disk_full_while_downloading_keeps_the_partial_file(server, tmp_path, monkeypatch):
    data = os.urandom(50_000)
    server.routes["/x.bin"] = Route([data])
    monkeypatch.setattr(download, "open", WriteSpy(fail_after=0), raising=False)
    with pytest.raises(download.DiskFullError, match=rf"disk full at {re.escape(str(tmp_path))} while downloading "
                                                     r"x.bin: it needs about 50.0 KB more free space"):
        download.fetch(RemoteFile("x", (Mirror(server.url("/x.bin"), md5(data)),)), tmp_path, http=FAST)
    assert len(server.requests) == 1  # not retried, and no other mirror tried
