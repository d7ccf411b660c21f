"""`meshnode memory …`: add, search, ingest, delete, stats, export, import and clean."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from memory.ingest import iter_source_files
from meshnode.cli.client import DaemonClient
from meshnode.cli.output import emit, render_table, say
from meshnode.errors import EXIT_ERROR, EXIT_OK, MeshnodeError
from meshnode.node.home import resolve_home
from protocols.records import COLLECTIONS

IMPORT_BATCH = 500
#: Records sent per POST /v1/memory/records by `memory add --file` (well under the API's
#: 1000 records and 8 MiB of body).
ADD_BATCH = 500
ADD_BATCH_BYTES = 4 << 20


def _client(args: argparse.Namespace) -> DaemonClient:
    return DaemonClient(resolve_home(args.home), timeout=600.0)


def _meta_value(text: str) -> str | int | float | bool:
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_meta(pairs: Sequence[str]) -> dict[str, str | int | float | bool]:
    meta: dict[str, str | int | float | bool] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise MeshnodeError(f"--meta takes key=value, got {pair!r}")
        meta[key] = _meta_value(value)
    return meta


def _short(text: str, width: int = 70) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _records_from(path: str) -> list[dict[str, Any]]:
    """JSON Lines of records to add ({"text": ..., "kind"?, "collection"?, "meta"?}); "-"
    reads standard input."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise MeshnodeError(f"cannot read {path}: {exc.strerror or exc}") from None
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MeshnodeError(f"{path}:{number}: not JSON: {exc}") from None
        if not isinstance(row, dict):
            raise MeshnodeError(f"{path}:{number}: a record is a JSON object")
        rows.append(row)
    return rows


def cmd_add(args: argparse.Namespace) -> int:
    defaults = {"kind": args.kind, "collection": args.collection,
                "meta": parse_meta(args.meta)}
    if args.file is None:
        if args.text is None:
            raise MeshnodeError("give the record's TEXT, or --file with records to add")
        record = _client(args).post("/v1/memory/records", {"text": args.text, **defaults})
        return emit(args, record,
                    lambda r: f"added {r['id']} (seq {r['seq']}, {r['collection']})")
    rows = [{**defaults, **row} for row in _records_from(args.file)]
    if args.text is not None:
        rows.insert(0, {"text": args.text, **defaults})
    client = _client(args)
    added: dict[str, Any] = {"added": 0, "ids": []}
    for batch in _batches(rows):  # one batch per request: stored and announced as one
        result = client.post("/v1/memory/records", {"records": batch})
        added["added"] += result["added"]
        added["ids"] += result["ids"]
        _progress(added["added"], len(rows), "records")
    return emit(args, added, lambda a: f"added {a['added']} record(s)")


def _batches(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """At most ADD_BATCH rows and ADD_BATCH_BYTES of JSON a request."""
    batch: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        row_size = len(json.dumps(row))
        if batch and (len(batch) >= ADD_BATCH or size + row_size > ADD_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += row_size
    if batch:
        yield batch


def cmd_search(args: argparse.Namespace) -> int:
    hits = _client(args).get("/v1/memory/search", q=args.query, k=args.k, kind=args.kind,
                             collection=args.collection)

    def human(rows: list[dict[str, Any]]) -> str:
        if not rows:
            return "no matching records"
        return render_table(
            ["SCORE", "ID", "AUTHOR", "KIND", "TEXT"],
            [(f"{h['score']:.3f}", h["id"][:12], h["author"][-8:], h["kind"], _short(h["text"]))
             for h in rows],
        )

    return emit(args, hits, human)


def _progress(done: int, total: int, label: str) -> None:
    if not sys.stderr.isatty():
        print(f"[{done}/{total}] {label}", file=sys.stderr)
        return
    width = 30
    filled = width * done // max(total, 1)
    bar = "#" * filled + "." * (width - filled)
    print(f"\r[{bar}] {done}/{total} {_short(label, 40):40}", end="", file=sys.stderr, flush=True)
    if done == total:
        print(file=sys.stderr)


def cmd_ingest(args: argparse.Namespace) -> int:
    client = _client(args)
    files = iter_source_files(args.paths)
    if not files:
        raise MeshnodeError(f"no Markdown or text files under {', '.join(args.paths)}")
    totals = {"changed": 0, "unchanged": 0, "removed": 0, "records": 0, "tombstones": 0}
    for i, path in enumerate(files, 1):
        report = client.post("/v1/memory/ingest", {"paths": [str(path.resolve())]})
        for key in totals:
            totals[key] += report.get(key, 0)
        _progress(i, len(files), str(path))
    if args.prune:
        roots = [str(Path(p).resolve()) for p in args.paths]
        report = client.post("/v1/memory/ingest", {"paths": roots, "prune": True})
        totals["removed"] += report.get("removed", 0)
        totals["tombstones"] += report.get("tombstones", 0)
    return emit(args, totals, lambda t: (
        f"{t['changed']} file(s) ingested into {t['records']} record(s), "
        f"{t['unchanged']} unchanged, {t['removed']} removed, {t['tombstones']} superseded"))


def cmd_delete(args: argparse.Namespace) -> int:
    tombstone = _client(args).post("/v1/memory/delete", {"id": args.id})
    return emit(args, tombstone, lambda t: f"deleted {args.id} (tombstone {t['id'][:12]})")


def cmd_stats(args: argparse.Namespace) -> int:
    def human(s: dict[str, Any]) -> str:
        lines = [f"uri       {s.get('uri')}",
                 f"embedder  {s['embedder']['name']} ({s['embedder']['dim']} dims)",
                 f"tenant    {s.get('tenant')}",
                 f"mode      {s['replication']['mode']}", ""]
        lines.append(render_table(["COLLECTION", "RECORDS"],
                                  sorted(s.get("collections", {}).items())))
        authors = s.get("authors", {})
        if authors:
            lines += ["", render_table(["AUTHOR", "RECORDS"], sorted(authors.items()))]
        peers = s["replication"]["peers"]
        if peers:
            lines += ["", render_table(
                ["PEER", "LAST SYNC", "PULLED", "AUTHORS BEHIND", "ERROR"],
                [(p, v["last_sync"] and f"{v['last_sync']:.0f}", v["pulled"],
                  v["authors_behind"], v["last_error"] or "") for p, v in sorted(peers.items())])]
        return "\n".join(lines)

    return emit(args, _client(args).get("/v1/memory/stats"), human)


def cmd_export(args: argparse.Namespace) -> int:
    records = _client(args).get("/v1/memory/export")
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        for record in records:
            out.write(json.dumps(record) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    if args.output:
        print(f"exported {len(records)} record(s) to {args.output}", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    source = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115
    client = _client(args)
    stored = duplicates = 0
    rejected: list[str] = []
    batch: list[Any] = []

    def send() -> None:
        nonlocal stored, duplicates
        result = client.post("/v1/memory/import", {"records": batch})
        stored += result["stored"]
        duplicates += result["duplicates"]
        rejected.extend(result["rejected"])
        batch.clear()

    with source:
        for number, line in enumerate(source, 1):
            if not line.strip():
                continue
            try:
                batch.append(json.loads(line))
            except ValueError:
                rejected.append(f"line {number}: not JSON")
                continue
            if len(batch) >= IMPORT_BATCH:
                send()
        if batch:
            send()
    for reason in rejected[:20]:
        say(f"rejected: {reason}", file=sys.stderr)
    print(f"imported {stored} record(s), {duplicates} already present, {len(rejected)} rejected")
    return EXIT_ERROR if rejected else EXIT_OK


def cmd_clean(args: argparse.Namespace) -> int:
    def human(found: dict[str, Any]) -> str:
        rows = found["records"]
        if not rows:
            return "nothing to clean: every solution of this node was accepted and is no echo"
        verb = "would tombstone" if found["dry_run"] else "tombstoned"
        table = render_table(["ID", "QUESTION", "REASON"],
                             [(r["id"][:12], _short(r["question"], 50), r["reason"])
                              for r in rows])
        return f"{verb} {len(rows)} solution(s) of this node:\n{table}"

    return emit(args, _client(args).post("/v1/memory/clean", {"dry_run": args.dry_run}), human)


def add_memory_commands(
    sub: Any, common: argparse.ArgumentParser, output: argparse.ArgumentParser
) -> None:
    memory = sub.add_parser("memory", help="the shared memory of the mesh")
    msub = memory.add_subparsers(dest="memory_command", required=True, metavar="COMMAND")

    p = msub.add_parser("add", parents=[common, output],
                        help="remember a piece of text (or many, with --file)")
    p.add_argument("text", nargs="?")
    p.add_argument("--file", metavar="JSONL",
                   help='records to add in batches, one JSON object a line ({"text": ..., '
                        'optionally "kind", "collection", "meta"}); "-" reads stdin')
    p.add_argument("--kind", default="note", help="a short label (default: note)")
    p.add_argument("--collection", default="expert_knowledge", choices=COLLECTIONS)
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                   help="metadata; repeat for more")
    p.set_defaults(func=cmd_add)

    p = msub.add_parser("search", parents=[common, output], help="semantic search")
    p.add_argument("query")
    p.add_argument("--k", type=int, default=5, help="how many results (default 5)")
    p.add_argument("--kind")
    p.add_argument("--collection", choices=COLLECTIONS)
    p.set_defaults(func=cmd_search)

    p = msub.add_parser("ingest", parents=[common, output],
                        help="chunk and store Markdown/text files or folders")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--prune", action="store_true",
                   help="also delete the records of files that disappeared under PATH")
    p.set_defaults(func=cmd_ingest)

    p = msub.add_parser("delete", parents=[common, output], help="delete one of your records")
    p.add_argument("id")
    p.set_defaults(func=cmd_delete)

    p = msub.add_parser("stats", parents=[common, output],
                        help="counts per collection and author, embedder, replication lag")
    p.set_defaults(func=cmd_stats)

    p = msub.add_parser("export", parents=[common], help="all records as JSON lines (backup)")
    p.add_argument("--output", "-o", help="file to write (default: stdout)")
    p.set_defaults(func=cmd_export)

    p = msub.add_parser("import", parents=[common], help="load records from JSON lines")
    p.add_argument("file", help="a JSON lines file from `memory export`, or - for stdin")
    p.set_defaults(func=cmd_import)

    p = msub.add_parser("clean", parents=[common, output],
                        help="tombstone this node's echo or unaccepted solutions")
    p.add_argument("--dry-run", action="store_true", help="only list what would go")
    p.set_defaults(func=cmd_clean)
