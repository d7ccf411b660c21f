"""`meshnode agents`, `ask`, `rate` and `trust`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from meshnode.cli.client import DaemonClient
from meshnode.cli.output import ago, emit, render_table, say
from meshnode.errors import MeshnodeError
from meshnode.node.home import resolve_home


def _client(args: argparse.Namespace, timeout: float = 30.0) -> DaemonClient:
    return DaemonClient(resolve_home(args.home), timeout=timeout)


def cmd_agents(args: argparse.Namespace) -> int:
    def human(agents: list[dict[str, Any]]) -> str:
        if not agents:
            return "no agents known in the mesh yet"

        def figure(a: dict[str, Any], key: str) -> str:
            q = a.get("quality")
            return f"{q[key]:.2f}" if q else "-"

        table = render_table(
            ["AGENT", "PEER", "ANSWERS", "FAITHFUL", "RETRIEVAL", "QUALITY", "SKILLS"],
            [(a["agent"] + (" (here)" if a["local"] else ""), a["peer_id"][-8:],
              str((a.get("quality") or {}).get("answers", 0)), figure(a, "faithfulness"),
              figure(a, "retrieval_precision"), figure(a, "quality"),
              ", ".join(s["name"] for s in a["skills"]))
             for a in sorted(agents, key=lambda a: (a["agent"], a["peer_id"]))],
        )
        return table + ("\nANSWERS, FAITHFUL, RETRIEVAL, QUALITY: the answers this node got "
                        "from the agent, as it checked them (mean per answer)")

    return emit(args, _client(args).get("/v1/agents"), human)


def format_answer(result: dict[str, Any], explain: bool) -> str:
    answer = result["answer"]
    lines = [f"{result['agent']} on {result['peer']} answered"
             f" ({answer.get('mode')}, task {result['task_id']}):", "", answer["text"], ""]
    for i, c in enumerate(answer.get("citations", []), 1):
        lines.append(f"[{i}] {c['id'][:12]} {c['collection']} by {c['author'][-8:]}:"
                     f" {c['snippet'][:90]}")
    t = result["timings"]
    lines += ["", f"time: {t['total_s']:.2f} s (routing {t['routing_s']:.3f}, network "
              f"{t['network_s']:.3f}, retrieval {t['retrieval_s']:.3f}, LLM {t['llm_s']:.3f})"]
    if "faithfulness" in answer:
        lines.append(f"checked here: faithfulness {answer['faithfulness']:.2f} "
                     f"({answer['supported']} of {answer['sentences']} sentences supported by "
                     f"what they cite), retrieval precision "
                     f"{answer['retrieval_precision']:.2f}, quality {answer['quality']:.2f}")
    if explain:
        lines += ["", "why:", *_explain_lines(result["explain"])]
        consulted = answer.get("consulted")
        if isinstance(consulted, list) and consulted:
            lines += ["consulted (as the answering node reports it):",
                      *_hop_lines(consulted, "  ")]
    return "\n".join(lines)


def _hop_lines(hops: list[Any], indent: str) -> list[str]:
    """Who asked whom, what was shared and reused, how long each hop took."""
    lines = []
    for hop in hops:
        if not isinstance(hop, dict):
            continue
        peer = str(hop.get("peer") or "")[-8:]
        reuse = ""
        if hop.get("shared"):
            reuse = (f"; shared {hop['shared']} record(s), {hop.get('reused', 0)} reused, "
                     + ("searched memory too" if hop.get("searched") else "no new search"))
        lines.append(f"{indent}{hop.get('by')} -> {hop.get('agent')}"
                     f"{'@' + peer if peer else ''}: {hop.get('state')} in "
                     f"{float(hop.get('seconds') or 0):.2f} s{reuse}"
                     + (f" ({hop['reason']})" if hop.get("reason") else ""))
        lines.append(f"{indent}  on: {str(hop.get('question', ''))[:100]!r}")
        lines += _hop_lines(hop.get("consulted") or [], indent + "  ")
    return lines


def _explain_lines(explain: dict[str, Any]) -> list[str]:
    rows = [(c["agent"], c["peer_id"][-8:], f"{c['factors']['relevance']:.3f}",
             f"{c['factors']['trust']:.3f}", f"{c['score']:.4f}",
             "yes" if c["explore"] else "probation" if c.get("probation") else "")
            for c in explain["candidates"]]
    lines = ["candidates (relevance is squared; trust includes its floor):",
             render_table(["AGENT", "PEER", "RELEVANCE", "TRUST", "SCORE", "EXPLORE"], rows)]
    if explain.get("irrelevant"):
        lines.append(f"{explain['irrelevant']} known agent(s) were not relevant enough")
    for n, wave in enumerate(explain["waves"], 1):
        lines.append(f"wave {n}:")
        for outcome in wave["outcomes"]:
            quality = "-" if outcome["quality"] is None else f"{outcome['quality']:.2f}"
            lines.append(f"  {outcome['agent']}@{outcome['peer'][-8:]}: {outcome['state']}"
                         f" in {outcome['seconds']:.2f} s, quality {quality}"
                         f" {outcome['reason']}".rstrip())
        lines.append(f"  choice: {wave['choice']['reasons']}")
    if "chosen" in explain:
        chosen = explain["chosen"]
        lines.append(f"chosen: {chosen['agent']}@{chosen['peer'][-8:]}: {chosen['why']}")
        for check in chosen.get("checks", {}).get("checks", []):
            cites = "".join(f"[{n}]" for n in check["cites"]) or "[-]"
            verdict = "supported" if check["supported"] else check["why"]
            lines.append(f"  {cites} {check['support']:.2f} {verdict}: {check['text'][:70]}")
    return lines


def cmd_ask(args: argparse.Namespace) -> int:
    client = _client(args, timeout=args.timeout + 30)
    body: dict[str, Any] = {"question": args.question, "timeout": args.timeout}
    if args.agent:
        body["agent"] = args.agent
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    for line in client.stream_lines("/v1/ask", body):
        if "progress" in line and not args.json:
            _print_progress(line["progress"])
        result = line.get("result", result)
        error = (line.get("error") is not None and line) or error
    if result is None:
        reason = error["error"] if error else "the daemon ended the answer early"
        raise MeshnodeError(f"no answer: {reason}")
    if args.rate:
        result["rating"] = client.post("/v1/rate", {"task_id": result["task_id"],
                                                    "rating": args.rate})
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        say(format_answer(result, args.explain))
    return 0


def _print_progress(p: dict[str, Any]) -> None:
    if p.get("stage") == "routed":
        text = f"routing: {p['candidates']} relevant agent(s)"
    elif p.get("stage") == "asking":
        text = f"asking {p['agent']} on {p['peer'][-8:]}" + (" (exploring)" if p.get("explore")
                                                               else "")
    elif p.get("stage") == "status":
        text = f"{p['agent']}: {p['state']}"
    else:
        return
    say(f"... {text}", file=sys.stderr, flush=True)


def cmd_rate(args: argparse.Namespace) -> int:
    rated = _client(args).post("/v1/rate", {"task_id": args.task_id, "rating": args.rating})
    return emit(args, rated, lambda r: f"rated {r['agent']} on {r['peer'][-8:]}: {r['rating']}")


def cmd_trust(args: argparse.Namespace) -> int:
    def human(t: dict[str, Any]) -> str:
        rows = [(p["peer_id"][-8:] + (" (self)" if p["self"] else ""),
                 "yes" if p["pre_trusted"] else "", f"{p['local']:.3f}", f"{p['global']:.4f}",
                 " ".join(f"{k}={v}" for k, v in sorted(p["evidence"].items())
                          if k != "refused") or "-",
                 p["evidence"].get("refused", "-"),
                 ago(p["attestation"]["last_seen"]) if p["attestation"] else "-")
                for p in t["peers"]]
        run = t.get("last_run") or {}
        header = (f"pre-trusted: {len(t['pre_trusted'])}   attestations: {t['authors']}   "
                  f"with bad evidence only: {t.get('suspects', 0)}   "
                  f"last computation: {run.get('iterations', '-')} iterations")
        table = render_table(["PEER", "PRE-TRUSTED", "LOCAL", "GLOBAL", "EVIDENCE",
                              "REFUSED", "ATTESTED"], rows)
        return header + "\n" + table

    return emit(args, _client(args).get("/v1/trust"), human)


def add_agent_commands(
    sub: Any, common: argparse.ArgumentParser, output: argparse.ArgumentParser
) -> None:
    p = sub.add_parser("agents", parents=[common, output], help="every agent known in the mesh")
    p.set_defaults(func=cmd_agents)

    p = sub.add_parser("ask", parents=[common, output],
                       help="ask the mesh a question; it is routed to the best expert")
    p.add_argument("question")
    p.add_argument("--agent", help="ask this agent (by name), whatever the routing says")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    p.add_argument("--explain", action="store_true",
                   help="show the candidates, who was asked and why the answer won")
    p.add_argument("--rate", choices=["good", "bad"],
                   help="rate the answer at once (trust evidence for the answering peer)")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("rate", parents=[common, output], help="rate an answer good or bad")
    p.add_argument("task_id")
    p.add_argument("rating", choices=["good", "bad"])
    p.set_defaults(func=cmd_rate)

    p = sub.add_parser("trust", parents=[common, output],
                       help="local and global trust per peer, evidence and attestations")
    p.set_defaults(func=cmd_trust)
