"""Reverts for the smaller data-side items of finding 9 of the hostile-peers issue (see
tests/reverts/__init__.py; collected by tests/reverts/data.py)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

import memory.ingest as ingest
import memory.store as store_module
import meshnode.node.home as home_module
import protocols.codec as codec
from memory.backend import Backend
from memory.budget import PeerSyncBudget
from memory.errors import IngestError
from memory.files import write_atomic
from memory.ingest import SUFFIXES
from memory.marks import _TOMBSTONES, Marks, _Seqs
from meshnode.config import CONFIG_FILE, TEMPLATE
from meshnode.errors import ConfigError
from meshnode.node.home import IDENTITY_FILE, TOKEN_FILE, load_signer
from meshnode.node.topics import SignedTopic
from protocols.codec import MAX_FRAME, _no_ext
from protocols.envelope import validate_network_id
from protocols.errors import DecodeError, FrameTooLarge
from protocols.peerid import Signer
from protocols.records import COLLECTIONS
from tests.reverts.revert import Revert

# -- 9. smaller ----------------------------------------------------------------------------


def _swap_code(monkeypatch: pytest.MonkeyPatch, today: Callable[..., Any],
               old: Callable[..., Any]) -> None:
    """Run ``old``'s body wherever ``today`` is called, also through names imported before
    the revert (``from module import function``): the body is swapped, not the name. Names
    in ``old`` resolve in ``today``'s module."""
    monkeypatch.setattr(today, "__code__", old.__code__)


def _old_unpack(data: bytes, *, max_size: int = MAX_FRAME) -> Any:
    """e70e586 protocols/codec.py:33-59: msgpack's own limits only (every length bounded by
    the frame), so a 1 MiB frame may hold a million containers."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_size:
        raise FrameTooLarge(f"message of {len(data)} bytes exceeds the limit of {max_size}")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True,
                               ext_hook=_no_ext, timestamp=0, max_ext_len=0)
    except DecodeError:
        raise
    except (msgpack.UnpackException, ValueError, TypeError, OverflowError) as exc:
        raise DecodeError(f"malformed msgpack: {exc}") from None


FLOODS = ("tests/protocols/test_codec.py::"
          "test_container_floods_cost_memory_in_proportion_to_the_frame")
CODEC_CONTAINERS = Revert(
    name="codec-containers",
    finding="9. a 1 MiB frame of empty maps decodes to ~76 MB",
    before=(
        "unpack called msgpack.unpackb with no container limits (e70e586 "
        "protocols/codec.py:43-55): a 1 MiB frame of empty maps became a million dicts."
    ),
    apply=lambda mp: _swap_code(mp, codec.unpack, _old_unpack),
    tests=tuple(f"{FLOODS}[{case}]" for case in
                ("flat-maps", "chunked-maps", "chunked-lists", "lists-of-lists")),
)


def _decode_again(self: SignedTopic[Any], data: bytes) -> tuple[str, Any]:
    return self.codec.decode(data)


DECODED_TWICE = Revert(
    name="decoded-twice",
    finding="9. an attestation is checked twice",
    before=(
        "The trust topic's validator decoded and verified an attestation, then its listener "
        "decoded and verified it again (e70e586 meshnode/trust_service.py:73-79, 91-95)."
    ),
    apply=lambda mp: mp.setattr(SignedTopic, "_decode", _decode_again),
    tests=("tests/node/test_topics.py::test_a_message_is_checked_once_not_again_when_handled",),
)


SYNC_PULLS = Revert(
    name="sync-pulls-unlimited",
    finding="9. the memsync server answers unlimited pulls",
    before=(
        "Replicator.serve answered every Summary and Pull a peer sent, with no budget "
        "(e70e586 memory/replication.py:228-251)."
    ),
    apply=lambda mp: mp.setattr(PeerSyncBudget, "pull", lambda self, peer, now: ""),
    tests=(
        "tests/sync/test_hostile_sync.py::test_a_peer_over_its_sync_budget_is_told_to_come_back",
        "tests/node/test_hostile_data_inmemory.py::"
        "test_a_peer_pulling_without_end_is_told_to_come_back",
    ),
)


def _old_iter_source_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """e70e586 memory/ingest.py:43-63: every file os.walk lists, links included."""
    found: set[Path] = set()
    for raw in paths:
        path = Path(raw).expanduser().resolve()
        if path.is_dir():
            for folder, dirs, files in os.walk(path):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                found.update(Path(folder, name) for name in files
                             if not name.startswith(".") and Path(name).suffix.lower() in SUFFIXES)
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise IngestError(f"{raw}: not a text file ({', '.join(sorted(SUFFIXES))})")
            found.add(path)
        else:
            raise IngestError(f"{raw}: no such file or folder")
    return sorted(found)


INGEST_LINKS = Revert(
    name="ingest-follows-links",
    finding="9. ingest follows symlinks out of the folder",
    before=(
        "iter_source_files took every file os.walk listed in the folder, a link to "
        "~/.ssh/notes.md included (e70e586 memory/ingest.py:43-63)."
    ),
    apply=lambda mp: _swap_code(mp, ingest.iter_source_files, _old_iter_source_files),
    tests=("tests/sync/test_ingest.py::test_links_out_of_the_folder_are_not_followed",),
)

INGEST_PATHS = Revert(
    name="ingest-absolute-source",
    finding="9. ingest puts absolute paths in meta.source",
    before=(
        "A chunk's meta.source was the file's absolute path on this machine (e70e586 "
        "memory/ingest.py:336: change.path[-512:])."
    ),
    apply=lambda mp: mp.setattr(ingest, "source_name", lambda path, roots: str(path)),
    tests=("tests/sync/test_ingest.py::test_records_name_their_file_relative_to_the_folder",),
)


def _old_init_home(home: Path, *, network_id: str, force: bool = False) -> tuple[str, bool]:
    """e70e586 meshnode/home.py:47-73: config.toml written with write_text (the umask
    decides its mode) and an existing one left as it is."""
    try:
        validate_network_id(network_id)
    except DecodeError as exc:
        raise ConfigError(str(exc)) from None
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path = home / IDENTITY_FILE
    created = False
    if key_path.exists() and not force:
        signer = load_signer(home)
    else:
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        write_atomic(key_path, pem, private=True)
        signer = Signer(key)
        created = True
    config_path = home / CONFIG_FILE
    if not config_path.exists() or force:
        config_path.write_text(TEMPLATE.format(network_id=network_id), encoding="utf-8")
    if not (home / TOKEN_FILE).exists() or force:
        write_atomic(home / TOKEN_FILE, secrets.token_urlsafe(32), private=True)
    return signer.peer_id, created


CONFIG_UMASK = Revert(
    name="config-umask",
    finding="9. config.toml created with the default umask",
    before=(
        "init_home wrote config.toml (which can hold the network secret) with "
        "Path.write_text, so its mode was the umask's (e70e586 meshnode/home.py:68-70)."
    ),
    apply=lambda mp: _swap_code(mp, home_module.init_home, _old_init_home),
    tests=(
        "tests/node/test_home.py::test_secret_files_are_0600_even_with_a_permissive_umask",
        "tests/node/test_home.py::test_rerun_makes_an_existing_config_private",
    ),
)


def _unverified_marks(backend: Backend) -> Marks:
    """Today's walk over what a backend holds, but every row counts, as e70e586's scan of
    (author, seq) took them (memory/store.py:150-154): none is checked to verify."""
    seqs: dict[str, _Seqs] = {}
    for name in COLLECTIONS:
        for row in backend.scan(name, ("author", "seq")):
            seqs.setdefault(row["author"], _Seqs()).held.add(int(row["seq"]))
        for row in backend.scan(name, ("author", "seq", "meta"), where=_TOMBSTONES):
            seqs.setdefault(row["author"], _Seqs()).add(int(row["seq"]), row.get("meta"), True)
    marks = Marks()
    for author, entry in seqs.items():
        marks.load(author, *Marks.walk(author, entry.held, entry.freed, entry.legacy))
    return marks


PLANTED_ROW = Revert(
    name="planted-row",
    finding="9. a planted row with seq 2^63-1 on a shared Milvus server blocks an author",
    before=(
        "On open the store took each author's highest seq from every row of the collections, "
        "verified or not (e70e586 memory/store.py:150-154), so a planted seq 2^63-1 made "
        "the author's next seq 2^63."
    ),
    apply=lambda mp: mp.setattr(store_module, "load_marks", _unverified_marks),
    # Lite only: the same load_marks runs over a server's rows, and the child stays short
    # (the [server] case starts a Milvus server).
    tests=("tests/memory/test_store.py::test_a_planted_row_cannot_block_an_author[lite]",),
)

REVERTS: tuple[Revert, ...] = (
    CODEC_CONTAINERS, DECODED_TWICE, SYNC_PULLS, INGEST_LINKS, INGEST_PATHS, CONFIG_UMASK,
    PLANTED_ROW,
)
