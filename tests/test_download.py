"""Downloads against a local HTTP server (127.0.0.1 only): resume, retries, mirrors, checksums, safe
extraction, content checks, --from-dir and the CLI. Archives are generated here and a few KB small."""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import tarfile
import zipfile

import pytest

from descbench import cli
from descbench.data import download, sources
from descbench.data.download import HttpOptions
from descbench.data.sources import (Catalogue, Checksum, HPatchesSource, Mirror, RemoteFile, TaskFilesSource,
                                    UBCSetSource)
from descbench.errors import DescbenchError
from loopback import LoopbackServer, Route

FAST = HttpOptions(retries=3, backoff_s=0.01, timeout_s=10)


# --------------------------------------------------------------------------------------- generated data

def md5(data: bytes) -> Checksum:
    return Checksum("md5", hashlib.md5(data).hexdigest(), "test")


def payload(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def zip_bytes(files: dict[str, bytes], top: str | None = None, symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(f"{top}/{name}" if top else name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, target)
    return buffer.getvalue()


def tar_bytes(files: dict[str, bytes], links: dict[str, tuple[bytes, str]] | None = None) -> bytes:
    """``links``: name -> (tarfile.SYMTYPE or LNKTYPE, link target)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, (kind, target) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = target
            tf.addfile(info)
    return buffer.getvalue()


def ubc_files(n_patches: int = 300, n_info_lines: int | None = None, n_pairs: int = 10) -> dict[str, bytes]:
    """A tiny UBC-format set: 2 tiles hold 300 patches at 256 per tile (tile bytes are not decoded here)."""
    n_info_lines = n_patches if n_info_lines is None else n_info_lines
    return {
        "info.txt": "".join(f"{i // 3} 0\n" for i in range(n_info_lines)).encode(),
        "patches0000.bmp": b"BM" + payload(500, 1),
        "patches0001.bmp": b"BM" + payload(500, 2),
        sources.TEST_PAIRS_FILE: "".join(f"{i} {i // 3} 0 {i + 1} {(i + 1) // 3} 0 0\n"
                                         for i in range(n_pairs)).encode(),
    }


def tiny_ubc(server: LoopbackServer, archive: bytes, checksum: Checksum | None | str = "md5",
             name: str = "tiny") -> UBCSetSource:
    server.serve(f"/{name}.zip", archive)
    if checksum == "md5":
        checksum = md5(archive)
    return UBCSetSource(name, RemoteFile(name, (Mirror(server.url(f"/{name}.zip"), checksum),)),
                        n_patches=300, n_test_pairs=10)


def hpatches_files(sequences=("i_one", "v_two"), drop: str | None = None) -> dict[str, bytes]:
    return {f"{seq}/{image}": b"\x89PNG" + seq.encode() for seq in sequences
            for image in sources.HPATCHES_IMAGE_FILES if f"{seq}/{image}" != drop}


def blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# ------------------------------------------------------------------------------------------------- fetch

def test_resume_after_dropped_connection(server, tmp_path):
    data = payload(200_000)
    server.serve("/big.bin", data, "drop:50000")
    remote = RemoteFile("big", (Mirror(server.url("/big.bin"), md5(data)),))

    result = download.fetch(remote, tmp_path, http=FAST)

    assert result.path.read_bytes() == data and result.pinned
    etag = '"' + hashlib.sha1(data).hexdigest() + '"'
    assert server.hits("/big.bin") == [("/big.bin", None, None), ("/big.bin", "bytes=50000-", etag)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.bin", "big.bin.meta.json"]


def test_partial_file_resumes_in_the_next_run(server, tmp_path):
    data = payload(120_000, seed=3)
    server.serve("/big.bin", data, "drop:70000")
    remote = RemoteFile("big", (Mirror(server.url("/big.bin"), md5(data)),))

    with pytest.raises(DescbenchError, match=r"broke after 70,000 of 120,000 bytes.*gave up after 0 retries"):
        download.fetch(remote, tmp_path, http=HttpOptions(retries=0, backoff_s=0.01))
    [partial] = tmp_path.glob(".big.bin.*.part")
    assert partial.stat().st_size == 70_000 and not (tmp_path / "big.bin").exists()

    result = download.fetch(remote, tmp_path, http=FAST)
    assert result.path.read_bytes() == data
    assert server.hits("/big.bin")[-1][1] == "bytes=70000-"
    assert not list(tmp_path.glob(".*part*"))


def test_server_ignoring_range_restarts_the_file(server, tmp_path):
    data = payload(80_000, seed=4)
    server.serve("/f.bin", data, "drop:30000", "ignore-range")
    result = download.fetch(RemoteFile("f", (Mirror(server.url("/f.bin"), md5(data)),)), tmp_path, http=FAST)
    assert result.path.read_bytes() == data
    assert [r[1] for r in server.hits("/f.bin")] == [None, "bytes=30000-"]


def test_checksum_mismatch_removes_file_and_names_both_digests(server, tmp_path):
    data = payload(5000)
    server.serve("/x.zip", data)
    expected = hashlib.md5(b"something else").hexdigest()
    remote = RemoteFile("x", (Mirror(server.url("/x.zip"), Checksum("md5", expected, "the catalogue")),))

    with pytest.raises(DescbenchError) as err:
        download.fetch(remote, tmp_path, http=FAST)

    message = str(err.value)
    assert "checksum mismatch for x.zip" in message
    assert f"expected md5 {expected} (the catalogue)" in message
    assert f"md5 {hashlib.md5(data).hexdigest()}" in message and "removed" in message
    assert list(tmp_path.iterdir()) == []


def test_404_then_working_mirror(server, tmp_path):
    data = payload(3000)
    server.serve("/b/x.zip", data)
    remote = RemoteFile("x", (Mirror(server.url("/a/x.zip"), md5(data)), Mirror(server.url("/b/x.zip"), md5(data))))

    result = download.fetch(remote, tmp_path, http=FAST)

    assert result.origin == server.url("/b/x.zip") and result.path.read_bytes() == data
    assert len(server.hits("/a/x.zip")) == 1  # a 404 is not retried
    assert json.loads((tmp_path / "x.zip.meta.json").read_text())["origin"] == server.url("/b/x.zip")


def test_503_then_success(server, tmp_path):
    data = payload(3000)
    server.serve("/x.zip", data, "status:503", "status:502")
    result = download.fetch(RemoteFile("x", (Mirror(server.url("/x.zip"), md5(data)),)), tmp_path, http=FAST)
    assert result.path.read_bytes() == data
    assert len(server.hits("/x.zip")) == 3


def test_persistent_5xx_gives_up_with_every_mirror_named(server, tmp_path):
    server.routes["/x.zip"] = Route(plan=["status:503"] * 10)
    remote = RemoteFile("x", (Mirror(server.url("/x.zip"), md5(b"")), Mirror(server.url("/gone.zip"), md5(b""))))
    with pytest.raises(DescbenchError) as err:
        download.fetch(remote, tmp_path, http=HttpOptions(retries=2, backoff_s=0.01))
    assert "HTTP 503" in str(err.value) and "gave up after 2 retries" in str(err.value)
    assert "HTTP 404" in str(err.value) and "--from-dir" in str(err.value)
    assert len(server.hits("/x.zip")) == 3


def test_unknown_host_fails_the_mirror_without_retries(tmp_path, monkeypatch):
    import requests
    import urllib3

    def unresolvable(self, url, **kwargs):
        reason = urllib3.exceptions.NameResolutionError("dead.example", None, OSError("Name or service not known"))
        raise requests.ConnectionError(urllib3.exceptions.MaxRetryError(None, url, reason))

    monkeypatch.setattr(requests.Session, "get", unresolvable)
    remote = RemoteFile("x", (Mirror("http://dead.example/x.zip", md5(b"")),))
    with pytest.raises(DescbenchError, match="http://dead.example/x.zip: host dead.example not found"):
        download.fetch(remote, tmp_path, http=HttpOptions(retries=3, backoff_s=5.0))  # a retry would wait 5 s


def test_git_blob_id_digest_matches_git(tmp_path):
    # the ids `git hash-object` gives for b"hello\n" and for an empty file
    path = tmp_path / "blob.txt"
    path.write_bytes(b"hello\n")
    assert download.file_digests(path, ["git-blob"])["git-blob"] == "ce013625030ba8dba906f756967f9e9ca394464a"
    path.write_bytes(b"")
    assert download.file_digests(path, ["git-blob"])["git-blob"] == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


def test_task_files_verified_by_git_blob_id_and_flat(server, tmp_path):
    files = {"splits.json": b'{"a": {"name": "a", "test": ["i_one"]}}\n',
             "retr_queries_split-a.csv": b"s,idx\ni_one,3\n"}
    remotes = []
    for name, data in files.items():
        server.serve(f"/tasks/{name}", data)
        checksum = Checksum("git-blob", blob_id(data), "t")
        remotes.append(RemoteFile(name, (Mirror(server.url(f"/tasks/{name}"), checksum),)))

    result = download.download_hpatches_tasks(TaskFilesSource(tuple(remotes)), tmp_path, http=FAST)

    folder = tmp_path / "raw" / "hpatches-tasks"
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)
    assert all(f.pinned and f.verified_by == "git-blob matches t" for f in result.files)
    again = download.download_hpatches_tasks(TaskFilesSource(tuple(remotes)), tmp_path, http=FAST)
    assert again.reused and len(server.requests) == 2

    wrong = RemoteFile("verif_pos_split-a.csv", (Mirror(server.url("/tasks/splits.json"),
                                                        Checksum("git-blob", blob_id(b"other"), "t")),))
    with pytest.raises(DescbenchError, match=f"expected git-blob {blob_id(b'other')}"):
        download.download_hpatches_tasks(TaskFilesSource((wrong,)), tmp_path, http=FAST)
    assert not (folder / "verif_pos_split-a.csv").exists()


# ------------------------------------------------------------------------------------------- extraction

UNSAFE_ARCHIVES = {
    "zip-dotdot": ("a.zip", lambda: zip_bytes({"ok.txt": b"1", "../evil.txt": b"x"}), "'../evil.txt'", "'..'"),
    "zip-absolute": ("a.zip", lambda: zip_bytes({"/tmp/evil.txt": b"x"}), "'/tmp/evil.txt'", "absolute path"),
    "zip-symlink-out": ("a.zip", lambda: zip_bytes({"ok.txt": b"1"}, symlinks={"link": "../../evil"}),
                        "'link'", "symbolic link"),
    "tar-dotdot": ("a.tar.gz", lambda: tar_bytes({"d/../../evil.txt": b"x"}), "evil.txt'", "'..'"),
    "tar-absolute": ("a.tar.gz", lambda: tar_bytes({"/tmp/evil.txt": b"x"}), "'/tmp/evil.txt'", "absolute path"),
    "tar-symlink-out": ("a.tar.gz", lambda: tar_bytes({"ok.txt": b"1"}, {"d/link": (tarfile.SYMTYPE, "../../evil")}),
                        "'d/link'", "symbolic link to '../../evil'"),
    "tar-symlink-absolute": ("a.tar.gz", lambda: tar_bytes({}, {"link": (tarfile.SYMTYPE, "/etc")}),
                             "'link'", "symbolic link to '/etc'"),
    "tar-hardlink-out": ("a.tar.gz", lambda: tar_bytes({}, {"hard": (tarfile.LNKTYPE, "../evil")}),
                         "'hard'", "hard link"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE_ARCHIVES))
def test_unsafe_archive_members_are_refused(tmp_path, case):
    filename, build, member, reason = UNSAFE_ARCHIVES[case]
    work = tmp_path / "work"
    work.mkdir()
    archive = work / filename
    archive.write_bytes(build())

    with pytest.raises(DescbenchError, match=f"refusing to extract member .*{re.escape(member)}.*{re.escape(reason)}"):
        download.extract_archive(archive, work / "target", validate=lambda folder: "unused")

    assert sorted(p.name for p in work.iterdir()) == [filename]  # no target, no staging left
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "evil").exists()


def test_in_tree_symlinks_are_kept(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(zip_bytes({"top/data/x.txt": b"1"}, symlinks={"top/alias": "data/x.txt"}))
    download.extract_archive(archive, tmp_path / "target", validate=lambda folder: "ok")
    assert (tmp_path / "target" / "alias").is_symlink()
    assert (tmp_path / "target" / "alias").read_bytes() == b"1"


@pytest.mark.parametrize("top", [None, "tiny", "outer/tiny"])
def test_ubc_zip_with_or_without_top_folder(server, tmp_path, top):
    source = tiny_ubc(server, zip_bytes(ubc_files(), top=top))

    result = download.download_ubc_set(source, tmp_path, http=FAST)

    folder = tmp_path / "raw" / "ubc" / "tiny"
    assert result.folder == folder and not result.reused
    assert sorted(p.name for p in folder.iterdir()) == sorted(ubc_files())
    assert (folder / "info.txt").read_bytes() == ubc_files()["info.txt"]
    assert result.summary == "300 patches in 2 tiles, 10 test pairs"
    assert (tmp_path / "raw" / "archives" / "tiny.zip").read_bytes() == server.routes["/tiny.zip"].versions[0]


def test_hpatches_falls_back_to_the_tarball(server, tmp_path):
    tarball = tar_bytes({f"hpatches-release/{k}": v for k, v in hpatches_files().items()})
    server.serve("/hp.tar.gz", tarball)
    source = HPatchesSource(RemoteFile("hpatches-release", (
        Mirror(server.url("/missing/hpatches-release.zip")),
        Mirror(server.url("/hp.tar.gz"), md5(tarball), filename="hpatches-release.tar.gz"))), n_sequences=2)

    result = download.download_hpatches(source, tmp_path, http=FAST)

    folder = tmp_path / "raw" / "hpatches-release"
    assert sorted(p.name for p in folder.iterdir()) == ["i_one", "v_two"]
    assert len(list((folder / "v_two").glob("*.png"))) == 16
    assert result.summary == "2 sequences (1 i_, 1 v_) x 16 PNGs"
    assert result.files[0].path.name == "hpatches-release.tar.gz" and result.files[0].pinned


# ---------------------------------------------------------------------------------------- content checks

def test_ubc_content_with_wrong_count_is_refused(server, tmp_path):
    source = tiny_ubc(server, zip_bytes(ubc_files(n_info_lines=299, n_pairs=9), top="tiny"))

    with pytest.raises(DescbenchError) as err:
        download.download_ubc_set(source, tmp_path, http=FAST)

    message = str(err.value)
    assert "UBC set tiny: info.txt has 299 lines, expected 300 (one per patch)" in message
    assert f"{sources.TEST_PAIRS_FILE} has 9 lines, expected 10" in message
    assert "tiny.zip does not hold the expected data" in message
    assert sorted(p.name for p in (tmp_path / "raw" / "ubc").iterdir()) == []


def test_ubc_missing_files_and_tiles_are_named(tmp_path):
    files = ubc_files()
    del files["patches0001.bmp"], files[sources.TEST_PAIRS_FILE]
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    source = UBCSetSource("tiny", RemoteFile("tiny", ()), n_patches=300, n_test_pairs=10)
    with pytest.raises(DescbenchError,
                       match=r"1 patches\*\.bmp tiles, expected at least 2 .*m50_100000_100000_0.txt is missing"):
        download.validate_ubc_folder(tmp_path, source)


def test_hpatches_missing_png_is_named(tmp_path):
    for name, data in hpatches_files(("i_one", "v_two", "x_bad"), drop="v_two/h3.png").items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    source = HPatchesSource(RemoteFile("hp", ()), n_sequences=2)
    with pytest.raises(DescbenchError) as err:
        download.validate_hpatches_folder(tmp_path, source)
    assert "3 sequence folders, expected 2" in str(err.value)
    assert "folders not named i_* or v_*: x_bad" in str(err.value) and "v_two lacks h3.png" in str(err.value)


def test_sequence_check_names_five_incomplete_sequences_and_counts_the_rest(tmp_path):
    names = [f"i_{k}" for k in range(4)] + [f"v_{k}" for k in range(4)] + [f"x_{k}" for k in range(6)]
    for name in names:
        (tmp_path / name).mkdir()
    (tmp_path / "__MACOSX").mkdir()  # junk of macOS zip tools: not a sequence
    lacks = lambda seq: [] if seq.name == "v_3" else ["a.png", "b.png"]
    with pytest.raises(DescbenchError) as err:
        download.check_sequence_folders(tmp_path, "Label", 8, lacks, "2 PNGs", n_illumination=4)
    assert str(err.value) == (
        "Label: 14 sequence folders, expected 8; folders not named i_* or v_*: x_0, x_1, x_2, x_3, x_4 ...; "
        "i_0 lacks a.png, b.png; i_1 lacks a.png, b.png; i_2 lacks a.png, b.png; i_3 lacks a.png, b.png; "
        "v_0 lacks a.png, b.png; and 8 more incomplete sequences")
    for name in names[8:]:
        (tmp_path / name).rmdir()
    complete = lambda seq: []
    assert (download.check_sequence_folders(tmp_path, "Label", 8, complete, "2 PNGs", n_illumination=4)
            == "8 sequences (4 i_, 4 v_) x 2 PNGs")
    with pytest.raises(DescbenchError, match=r"^Label: 4 i_ sequences, expected 5$"):
        download.check_sequence_folders(tmp_path, "Label", 8, complete, "2 PNGs", n_illumination=5)
    # without n_illumination the split between i_ and v_ is not checked (the patch release)
    assert download.check_sequence_folders(tmp_path, "Label", 8, complete, "2 PNGs").startswith("8 sequences")


# --------------------------------------------------------------------------------- reruns and pinning

def test_rerun_verifies_instead_of_downloading_and_replaces_a_damaged_archive(server, tmp_path):
    source = tiny_ubc(server, zip_bytes(ubc_files(), top="tiny"))
    download.download_ubc_set(source, tmp_path, http=FAST)

    again = download.download_ubc_set(source, tmp_path, http=FAST)
    assert again.reused and len(server.requests) == 1

    archive = tmp_path / "raw" / "archives" / "tiny.zip"
    archive.write_bytes(archive.read_bytes()[:-1] + b"!")
    repaired = download.download_ubc_set(source, tmp_path, http=FAST)
    assert not repaired.files[0].reused and len(server.requests) == 2
    assert archive.read_bytes() == server.routes["/tiny.zip"].versions[0]

    archive.unlink()  # unpacked and verified before: the record is enough, nothing is downloaded
    assert download.download_ubc_set(source, tmp_path, http=FAST).reused and len(server.requests) == 2


def test_unpublished_checksum_is_recorded_and_can_be_pinned(server, tmp_path):
    archive = zip_bytes(ubc_files())
    source = tiny_ubc(server, archive, checksum=None)
    sha256 = hashlib.sha256(archive).hexdigest()

    with pytest.raises(DescbenchError, match=f"expected sha256 {'0' * 64} \\(--expect-sha256\\), got sha256 {sha256}"):
        download.download_ubc_set(source, tmp_path, http=FAST, expect_sha256="0" * 64)

    result = download.download_ubc_set(source, tmp_path, http=FAST)
    assert not result.files[0].pinned and result.files[0].sha256 == sha256
    meta = json.loads((tmp_path / "raw" / "archives" / "tiny.zip.meta.json").read_text())
    assert meta["sha256"] == sha256 and meta["origin"] == server.url("/tiny.zip") and meta["pinned"] is False

    pinned = download.download_ubc_set(source, tmp_path, http=FAST, expect_sha256=sha256.upper())
    assert pinned.reused and pinned.files[0].pinned


# ---------------------------------------------------------------------------------------- --from-dir, CLI

def test_from_dir_uses_local_archives_without_network(tmp_path):
    archive = zip_bytes(ubc_files(), top="tiny")
    (tmp_path / "mine" / "sub").mkdir(parents=True)
    (tmp_path / "mine" / "sub" / "tiny.zip").write_bytes(archive)
    (tmp_path / "mine" / "tiny.zip").write_bytes(b"not it")
    unreachable = RemoteFile("tiny", (Mirror("http://127.0.0.1:9/tiny.zip", md5(archive)),))
    source = UBCSetSource("tiny", unreachable, n_patches=300, n_test_pairs=10)

    result = download.download_ubc_set(source, tmp_path / "data", from_dir=tmp_path / "mine")

    assert result.files[0].origin == str(tmp_path / "mine" / "sub" / "tiny.zip")
    assert (tmp_path / "data" / "raw" / "ubc" / "tiny" / "info.txt").is_file()
    assert not (tmp_path / "data" / "raw" / "archives" / "tiny.zip").exists()  # used in place, not copied
    assert download.download_ubc_set(source, tmp_path / "data", from_dir=tmp_path / "mine").reused

    with pytest.raises(DescbenchError, match="no file named other.zip"):
        download.fetch(RemoteFile("other", (Mirror("http://127.0.0.1:9/other.zip", md5(b"")),)),
                       tmp_path / "data", from_dir=tmp_path / "mine")


def test_cli_download_ubc_prints_recorded_sha256(server, tmp_path, monkeypatch, capsys):
    archive = zip_bytes(ubc_files())
    source = tiny_ubc(server, archive, checksum=None)
    monkeypatch.setattr(sources, "CATALOGUE", Catalogue(ubc={"tiny": source}, hpatches=sources.HPATCHES,
                                                        hpatches_tasks=sources.HPATCHES_TASKS))

    assert cli.main(["download", "ubc", "tiny", "--root", str(tmp_path)]) == 0

    out = capsys.readouterr().out
    sha256 = hashlib.sha256(archive).hexdigest()
    assert f"tiny: {tmp_path / 'raw' / 'ubc' / 'tiny'} (300 patches in 2 tiles, 10 test pairs; done)" in out
    assert f"--expect-sha256 tiny={sha256}" in out
    assert cli.main(["download", "ubc", "--root", str(tmp_path), "--expect-sha256", f"tiny={sha256}"]) == 0
    assert "already present, verified" in capsys.readouterr().out
    assert cli.main(["download", "ubc", "--root", str(tmp_path), "--expect-sha256", "tiny=abc"]) == 2
    assert "is not a SHA-256" in capsys.readouterr().err


def test_cli_from_dir_refuses_a_wrong_notredame_zip(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notredame.zip").write_bytes(zip_bytes(ubc_files()))

    code = cli.main(["download", "ubc", "notredame", "--root", str(tmp_path / "data"),
                     "--from-dir", str(tmp_path / "mine")])

    err = capsys.readouterr().err
    assert code == 2 and "checksum mismatch" in err and str(tmp_path / "mine" / "notredame.zip") in err
    assert "md5 a0d36b46324d5807c559145e1f940359" in err and "md5 509eda8535847b8c0a90bbb210c83484" in err
    assert cli.main(["download", "ubc", "lyon", "--root", str(tmp_path)]) == 2
    assert "unknown UBC set(s) lyon; choose from liberty, notredame, yosemite" in capsys.readouterr().err


def test_catalogue_lists_the_published_sources():
    catalogue = sources.CATALOGUE
    assert {n: s.n_patches for n, s in catalogue.ubc.items()} == {"liberty": 450_092, "notredame": 468_159,
                                                                  "yosemite": 633_587}
    for ubc in catalogue.ubc.values():
        assert ubc.archive.mirrors[0].url.startswith(sources.CTU_UBC) and ubc.n_test_pairs == 100_000
        assert all(m.checksum is not None for m in ubc.archive.mirrors)
    assert catalogue.hpatches.archive.mirrors[0].url.endswith("vbalnt/hpatches/resolve/main/hpatches-release.zip")
    task_names = {f.name for f in catalogue.hpatches_tasks.files}
    splits = ("a", "b", "c", "full", "illum", "view")
    kinds = ("verif_pos", "verif_neg_intra", "verif_neg_inter", "retr_queries", "retr_distractors")
    assert task_names == {"splits.json"} | {f"{k}_split-{s}.csv" for k in kinds for s in splits}
    for remote in catalogue.hpatches_tasks.files:
        assert sources.HPATCHES_BENCHMARK_COMMIT in remote.mirrors[0].url
        assert remote.mirrors[0].checksum.algorithm == "git-blob" and len(remote.mirrors[0].checksum.value) == 40
