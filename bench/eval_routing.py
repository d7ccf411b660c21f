"""Routing and answer quality on the demo mesh: the labelled questions of bench/eval.

Starts the mesh `meshnode demo` builds (three experts seeded with meshnode/data/kb and an
asking node: four real daemons on loopback, Milvus Lite, no LLM key), asks every question of
bench/eval/questions.json on the asking node, and asks the whole set three times. After each
answer a simulated user gives its verdict, as `meshnode rate` would, by what the answer says
(not by who said it): good when it is grounded (harness faithfulness at least 0.5) and on
the question (retrieval precision against the labels at least 0.5), bad otherwise. So the
mesh can learn from accepted answers between passes, and the trust it builds is earned by
right answers.

Every figure is computed here, the same way for any version of meshnode (so that the code
of an older commit can be measured with ``--code``):

- routing accuracy: in-domain questions answered by the labelled expert;
- no-answer rate: in-domain questions that got no answer; off-topic questions answered
  "no expert" (any refusal counts) and off-topic questions answered anyway;
- faithfulness: per answer, the share of its sentences supported by a record it cites
  (meshnode.agents.grounding, with the cited records read from the asking node's memory);
- retrieval precision: per answer, the share of cited records that come from one of the
  question's labelled knowledge-base files (a solution counts by the records it rests on);
- echoes: answers with a sentence that merely restates the question.

    python bench/eval_routing.py                         # hashing, this tree
    python bench/eval_routing.py --embedder minilm
    python bench/eval_routing.py --code /tmp/old-tree    # daemons from another checkout
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshnode.agents.grounding import check_answer, claims, passage_of, restates
from meshnode.cli.client import DaemonClient
from meshnode.cli.demo import demo_nodes, start_demo_mesh
from meshnode.errors import MeshnodeError
from protocols.records import MemoryRecord, record_from_json

QUESTIONS = Path(__file__).resolve().parent / "eval" / "questions.json"
KB = Path(__file__).resolve().parents[1] / "meshnode" / "data" / "kb"
#: Knowledge-base file name -> its label in questions.json ("python/typing-mypy.md").
_KB_FILES = {f.name: f.relative_to(KB).as_posix() for f in KB.rglob("*.md")}


@dataclass
class Outcome:
    id: str
    split: str
    expert: str | None
    pass_no: int
    agent: str | None  # who answered; None: no answer
    error: str
    faithfulness: float | None
    precision: float | None  # against the labelled files
    echo: bool
    seconds: float
    reported: dict[str, Any]  # the figures the asker itself reported, if any


def _records(client: DaemonClient) -> dict[str, MemoryRecord]:
    return {r.id: r for r in (record_from_json(row) for row in client.get("/v1/memory/export"))}


def _files(record: MemoryRecord, records: dict[str, MemoryRecord], depth: int = 0) -> set[str]:
    """The knowledge-base files a record comes from (a solution: those of its sources)."""
    source = record.meta.get("source")
    if isinstance(source, str) and source:
        # Older trees named the file by its path (".../kb/python/x.md"); ingest now names it
        # relative to the folder ingested (the demo seeds each expert from kb/<topic>, so
        # "x.md"). The knowledge base's file names are unique, so the name identifies it.
        return {_KB_FILES.get(source.rsplit("/", 1)[-1], source)}
    found: set[str] = set()
    ids = record.meta.get("sources")
    if depth < 3 and isinstance(ids, str):
        for i in ids.split(","):
            if i in records:
                found |= _files(records[i], records, depth + 1)
    return found


def _ask(client: DaemonClient, question: str) -> tuple[dict[str, Any] | None, str]:
    result: dict[str, Any] | None = None
    error = ""
    for line in client.stream_lines("/v1/ask", {"question": question, "timeout": 60}):
        result = line.get("result", result)
        error = line.get("error") or error
    return result, error


def evaluate(client: DaemonClient, q: dict[str, Any], pass_no: int) -> Outcome:
    started = time.monotonic()
    result, error = _ask(client, q["question"])
    seconds = time.monotonic() - started
    if result is None:
        return Outcome(q["id"], q["split"], q["expert"], pass_no, None, error or "no answer",
                       None, None, False, seconds, {})
    answer = result["answer"]
    records = _records(client)
    cited = [records.get(c["id"]) for c in answer.get("citations", [])]
    passages = [passage_of(r.collection, r.kind, r.text) if r else None for r in cited]
    grounding = check_answer(q["question"], answer["text"], passages)
    wanted = set(q["sources"])
    files = [_files(r, records) if r else set() for r in cited]
    precision = (sum(bool(f & wanted) for f in files) / len(files)) if files else 0.0
    echo = any(restates(c.text, q["question"]) for c in claims(answer["text"]))
    reported = {k: answer[k] for k in ("faithfulness", "retrieval_precision", "quality")
                if k in answer}
    outcome = Outcome(q["id"], q["split"], q["expert"], pass_no, result["agent"], "",
                      grounding.faithfulness, precision, echo, seconds, reported)
    good = grounding.faithfulness >= 0.5 and precision >= 0.5
    try:
        client.post("/v1/rate", {"task_id": result["task_id"], "rating": "good" if good else "bad"})
    except MeshnodeError as exc:  # e.g. an older node that took the answer from elsewhere
        print(f"  (could not rate {q['id']}: {exc})", flush=True)
    return outcome


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.fmean(kept) if kept else None


def summarise(outcomes: list[Outcome]) -> dict[str, Any]:
    domain = [o for o in outcomes if o.expert]
    off = [o for o in outcomes if not o.expert]
    answered = [o for o in domain if o.agent]
    return {
        "questions": len(outcomes),
        "routing_accuracy": sum(o.agent == o.expert for o in domain) / len(domain) if domain
        else None,
        "no_answer_rate": sum(o.agent is None for o in domain) / len(domain) if domain
        else None,
        "off_topic_no_expert": sum(o.agent is None for o in off) / len(off) if off else None,
        "faithfulness": _mean([o.faithfulness for o in answered]),
        "retrieval_precision": _mean([o.precision for o in answered]),
        "echoes": sum(o.echo for o in outcomes if o.agent),
        "reported_quality": _mean([o.reported.get("quality") for o in answered]),
        "p50_s": statistics.median(o.seconds for o in outcomes) if outcomes else None,
    }


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def report(outcomes: list[Outcome], passes: int) -> str:
    heads = ["split", "pass", "questions", "routing_accuracy", "no_answer_rate",
             "off_topic_no_expert", "faithfulness", "retrieval_precision", "echoes",
             "reported_quality", "p50_s"]
    lines = ["| " + " | ".join(heads) + " |", "|---" * len(heads) + "|"]
    for split in ("tune", "heldout", "all"):
        for p in range(1, passes + 1):
            rows = [o for o in outcomes if o.pass_no == p and split in (o.split, "all")]
            figures = summarise(rows)
            lines.append("| " + " | ".join([split, str(p)] + [_cell(figures[h])
                                                              for h in heads[2:]]) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embedder", default="hashing", choices=["hashing", "minilm"])
    parser.add_argument("--code", type=Path, help="run the daemons from this source tree")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--split", choices=["tune", "heldout", "all"], default="all")
    parser.add_argument("--dir", type=Path, help="keep the node homes here")
    parser.add_argument("--json", type=Path, help="write every outcome here")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    questions = [q for q in json.loads(QUESTIONS.read_text())["questions"]
                 if args.split in (q["split"], "all")]
    root = args.dir or Path(tempfile.mkdtemp(prefix="meshnode-eval-"))
    root.mkdir(parents=True, exist_ok=True)
    nodes = demo_nodes(root, {("memory", "embedder"): args.embedder}, args.code)
    started = time.monotonic()
    outcomes: list[Outcome] = []
    setup_s = 0.0
    try:
        start_demo_mesh(nodes, lambda line: print(line, flush=True))
        setup_s = time.monotonic() - started
        client = DaemonClient(nodes[-1].home, timeout=120)
        rng = random.Random(args.seed)
        for p in range(1, args.passes + 1):
            order = list(questions)
            rng.shuffle(order)
            for q in order:
                outcome = evaluate(client, q, p)
                outcomes.append(outcome)
                mark = "ok" if outcome.agent == q["expert"] else "XX"
                print(f"  pass {p} {mark} {q['id']:7} -> {outcome.agent or 'no answer':14} "
                      f"F={_cell(outcome.faithfulness)} P={_cell(outcome.precision)} "
                      f"{outcome.error[:60]}", flush=True)
            time.sleep(6)  # solutions written on acceptance reach the experts (sync 5 s)
    finally:
        for node in nodes:
            node.terminate()
        for node in nodes:
            node.wait()
    print(f"\nembedder {args.embedder}, code {args.code or 'this tree'}, "
          f"mesh set up in {setup_s:.0f} s, {len(outcomes)} asks\n")
    print(report(outcomes, args.passes))
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=1))


if __name__ == "__main__":
    main()
