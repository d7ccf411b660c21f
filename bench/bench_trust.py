"""Trust routing simulation: does relevance x trust keep questions away from liars?

A simulated mesh (no sockets) whose nodes run the real meshnode.trust.TrustGraph and
meshnode.ask.policy code. Every node hosts one agent competent in two of eight topics.
Malicious nodes claim every topic as convincingly as a real expert, answer every question
wrongly but confidently (their answers look as good as right ones to the asker's quality
estimate), praise each other in their trust attestations, and take a fresh identity from
time to time. Questions arrive at random honest nodes; the asker ranks the others, asks
them in waves, takes an answer by quality x trust and records the evidence the daemon
would (time-outs; accepted unless the user rates the answer bad: see ``feedback``). Every
``round`` questions, every node publishes its signed attestation and every honest node
accepts them all through the real decoder and recomputes global trust. Halfway through,
a few honest newcomers join, to see whether exploration lets them earn their share.

The figure of merit is the share of questions answered by an honest agent competent in the
question's topic, over time, for three routers: random, relevance only, relevance x trust.

    python bench/bench_trust.py                  # the RESULTS.md run
    python bench/bench_trust.py --malicious 0.7 --explore 0.1 --fanout 2
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshnode.ask.policy import (
    DEFAULT_POLICY,
    Candidate,
    RoutingPolicy,
    Scored,
    choose_answer,
    corroborated_choice,
    rank,
    score,
    waves,
)
from meshnode.trust.graph import Outcome, TrustGraph
from protocols.envelope import decode_envelope, encode_envelope, seal
from protocols.peerid import Signer
from protocols.trust import TRUST, attestation_from_envelope

TOPICS = 8
NETWORK = "bench-trust"
STRATEGIES = ("random", "relevance", "trust")
LABELS = {"random": "random", "relevance": "relevance", "trust": "relevance x trust"}
RELEVANCE_ONLY = RoutingPolicy(trust_exp=0.0)  # max(floor, trust) ** 0 == 1: trust ignored
SECONDS_PER_QUESTION = 6.0  # the mesh's simulated clock: ten questions a minute
CAUGHT = 0.4  # share of wrong answers their asker rates bad
RATED_GOOD = 0.2  # share of right answers their asker rates good


@dataclass(frozen=True)
class Settings:
    nodes: int = 120
    questions: int = 12000
    round: int = 150  # questions between attestation rounds
    # Honest nodes every operator lists in trust.pre_trusted (an explicit choice: a node
    # does not pre-trust its bootstrap peers for being bootstrap peers).
    bootstrap: int = 3
    churn: float = 0.2  # chance per round that a malicious node takes a new identity
    explore: float = 0.05
    alpha: float = 0.15  # TrustGraph's anchor weight
    policy: RoutingPolicy = DEFAULT_POLICY
    fanout: int = 3
    min_relevance: float = 0.5
    min_quality: float = 0.5
    timeout: float = 0.02  # chance that an honest agent does not answer in time
    newcomers: int = 6  # honest nodes that join halfway through


@dataclass
class Agent:
    signer: Signer
    honest: bool
    skills: frozenset[int]
    relevance: list[float]  # what its agent card claims, per topic
    rtt_ms: float
    graph: TrustGraph | None = None
    newcomer: bool = False

    @property
    def peer_id(self) -> str:
        return self.signer.peer_id


def claimed_relevance(skills: frozenset[int], rng: random.Random) -> list[float]:
    return [
        rng.uniform(0.75, 0.95) if t in skills else rng.uniform(0.0, 0.3) for t in range(TOPICS)
    ]


def new_agent(honest: bool, rng: random.Random) -> Agent:
    skills = frozenset(rng.sample(range(TOPICS), 2)) if honest else frozenset(range(TOPICS))
    return Agent(
        Signer.from_seed(rng.randbytes(32)),
        honest,
        skills,
        claimed_relevance(skills, rng),
        rtt_ms=rng.uniform(5.0, 80.0),
    )


def answer(
    agent: Agent, topic: int, cfg: Settings, rng: random.Random
) -> tuple[float | None, bool]:
    """(the asker's quality estimate or None for a time-out, whether the answer is right)."""
    if not agent.honest:
        return rng.uniform(0.7, 1.0), False  # wrong, and written to look right
    if rng.random() < cfg.timeout:
        return None, False
    right = rng.random() < (0.95 if topic in agent.skills else 0.2)
    return (rng.uniform(0.6, 1.0) if right else rng.uniform(0.3, 0.7)), right


def feedback(right: bool, rng: random.Random) -> list[Outcome]:
    """The evidence the asking node records for the answer it took, as meshnode.ask.asker does.

    An answer counts as accepted unless the user rates it bad in the rating window; a good
    rating adds to the acceptance. Users catch (rate bad) CAUGHT of the wrong answers, so
    the rest of a liar's answers count as accepted, and rate RATED_GOOD of the right ones.
    """
    draw = rng.random()
    if right:
        return [Outcome.ACCEPTED, Outcome.RATED_GOOD] if draw < RATED_GOOD else [Outcome.ACCEPTED]
    return [Outcome.RATED_BAD] if draw < CAUGHT else [Outcome.ACCEPTED]


@dataclass
class Mesh:
    cfg: Settings
    malicious: float
    strategy: str
    rng: random.Random
    agents: list[Agent] = field(default_factory=list)

    def __post_init__(self) -> None:
        bad = round(self.malicious * self.cfg.nodes)
        self.agents = [new_agent(i >= bad, self.rng) for i in range(self.cfg.nodes)]
        self.honest = [a for a in self.agents if a.honest]
        self.anchors = {a.peer_id for a in self.honest[: self.cfg.bootstrap]}
        for a in self.honest:
            self.give_graph(a)
        self.seq = 0

    def give_graph(self, a: Agent) -> None:
        if self.strategy == "trust":
            a.graph = TrustGraph(a.peer_id, self.anchors | {a.peer_id}, alpha=self.cfg.alpha)

    def join(self) -> None:
        for _ in range(self.cfg.newcomers):
            a = new_agent(True, self.rng)
            a.newcomer = True
            self.give_graph(a)
            self.agents.append(a)
            self.honest.append(a)

    def now(self, q: int) -> float:
        return 1.8e9 + q * SECONDS_PER_QUESTION

    def gossip_round(self, q: int) -> None:
        now = self.now(q)
        bad = [a for a in self.agents if not a.honest]
        for a in bad:
            if self.rng.random() < self.cfg.churn:
                a.signer = Signer.from_seed(self.rng.randbytes(32))
                a.relevance = claimed_relevance(a.skills, self.rng)
        if self.strategy != "trust":
            return
        bodies = []
        for a in self.agents:
            if a.graph is not None:
                body = a.graph.attestation(now).to_body()
            else:  # colluding praise, shared among the current malicious identities
                others = [b.peer_id for b in bad if b is not a]
                self.seq += 1
                scores = {p: 1.0 / len(others) for p in others} if others else {}
                body = {"author": a.peer_id, "seq": self.seq, "issued": now, "scores": scores}
            env = seal(a.signer, NETWORK, TRUST, body, now=now)
            bodies.append(attestation_from_envelope(decode_envelope(encode_envelope(env))))
        for a in self.honest:
            assert a.graph is not None
            for attestation in bodies:
                a.graph.accept_attestation(attestation, now)
            a.graph.compute_global()

    def candidates(self, asker: Agent, topic: int) -> list[Candidate]:
        graph, skill, out = asker.graph, f"topic-{topic}", []
        for a in self.agents:
            if a is asker:
                continue
            out.append(
                Candidate(
                    agent=f"agent-{a.peer_id[-6:]}",
                    peer_id=a.peer_id,
                    relevance=a.relevance[topic] + self.rng.uniform(-0.08, 0.08),
                    trust=graph.relative_trust(a.peer_id) if graph else 0.0,
                    load=0.0,
                    rtt_ms=a.rtt_ms,
                    experience=graph.experience(a.peer_id, skill) if graph else 1.0,
                )
            )
        return out

    def ranked(self, cands: list[Candidate]) -> list[Scored]:
        cfg = self.cfg
        if self.strategy == "random":
            order = [score(c) for c in cands]
            self.rng.shuffle(order)
            return order
        if self.strategy == "relevance":
            return rank(
                cands,
                min_relevance=cfg.min_relevance,
                explore=0.0,
                rng=self.rng,
                policy=RELEVANCE_ONLY,
            )
        return rank(
            cands,
            min_relevance=cfg.min_relevance,
            explore=cfg.explore,
            rng=self.rng,
            policy=cfg.policy,
        )

    def ask(self, q: int) -> tuple[bool, bool, bool]:
        """One question: answered by (an honest competent agent, a liar, a newcomer)?"""
        cfg, rng, now = self.cfg, self.rng, self.now(q)
        asker, topic = rng.choice(self.honest), rng.randrange(TOPICS)
        by_id = {a.peer_id: a for a in self.agents}
        policy = RELEVANCE_ONLY if self.strategy != "trust" else cfg.policy
        graph, skill = asker.graph, f"topic-{topic}"
        for wave in waves(
            self.ranked(self.candidates(asker, topic)), fanout=cfg.fanout, max_waves=3
        ):
            replies = [
                (s.candidate, *answer(by_id[s.candidate.peer_id], topic, cfg, rng)) for s in wave
            ]
            choice = choose_answer(
                [(c, qual) for c, qual, _ in replies], min_quality=cfg.min_quality, policy=policy
            )
            if graph is not None:
                for c, qual, _ in replies:
                    if qual is None:
                        graph.record(c.peer_id, Outcome.TIMEOUT, skill=skill, now=now)
            if choice.index is None:
                continue
            # Right answers say the same thing; a wrong one agrees with nothing.
            best_right = replies[choice.index][2]
            choice = corroborated_choice(
                choice, [(c, qual) for c, qual, _ in replies],
                [best_right and right for _, _, right in replies],
                min_quality=cfg.min_quality, policy=policy)
            assert choice.index is not None
            chosen, _, right = replies[choice.index]
            agent = by_id[chosen.peer_id]
            if graph is not None:
                verdict = feedback(right, rng)
                for outcome in verdict:
                    graph.record(agent.peer_id, outcome, skill=skill, now=now)
                # The answers that corroborated it share the verdict.
                for i, (c, _, also_right) in enumerate(replies):
                    if i != choice.index and right and also_right:
                        for outcome in verdict:
                            graph.record(c.peer_id, outcome, skill=skill, now=now)
            return agent.honest and topic in agent.skills, not agent.honest, agent.newcomer
        return False, False, False


def simulate(job: tuple[Settings, float, str, int]) -> dict[str, Any]:
    cfg, malicious, strategy, seed = job
    started = time.process_time()
    mesh = Mesh(cfg, malicious, strategy, random.Random(seed))
    good, liar, new = [], [], []
    for q in range(cfg.questions):
        if q == cfg.questions // 2:
            mesh.join()
        if q % cfg.round == 0 and q:
            mesh.gossip_round(q)
        answered = mesh.ask(q)
        good.append(answered[0])
        liar.append(answered[1])
        new.append(answered[2])
    # What the newcomers would answer if routing spread questions evenly over the honest
    # agents competent in each topic (every topic is asked equally often).
    fair = statistics.fmean(
        sum(t in a.skills for a in mesh.honest if a.newcomer)
        / sum(t in a.skills for a in mesh.honest)
        for t in range(TOPICS)
    )
    return {
        "malicious": malicious,
        "strategy": strategy,
        "good": good,
        "liar": liar,
        "new": new,
        "fair": fair,
        "cpu_s": time.process_time() - started,
    }


def converged_at(good: Sequence[float], *, window: int, final: float, slack: float) -> int:
    """Questions until the moving share (over ``window``) first comes within ``slack`` of
    the ``final`` level: how long the mesh needs to learn whom to trust."""
    running = sum(good[:window])
    for end in range(window, len(good) + 1):
        if end > window:
            running += good[end - 1] - good[end - 1 - window]
        if running / window >= final - slack:
            return end
    return len(good)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=Settings.nodes)
    parser.add_argument("--questions", type=int, default=Settings.questions)
    parser.add_argument("--malicious", type=float, nargs="+", default=[0.0, 0.2, 0.4, 0.7])
    parser.add_argument("--explore", type=float, default=Settings.explore)
    parser.add_argument("--fanout", type=int, default=Settings.fanout)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--windows", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--explore-floor", type=float, default=DEFAULT_POLICY.explore_floor)
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    args = parser.parse_args(argv)
    policy = replace(DEFAULT_POLICY, explore_floor=args.explore_floor)
    cfg = Settings(nodes=args.nodes, questions=args.questions, explore=args.explore,
                   fanout=args.fanout, policy=policy)
    jobs = [
        (cfg, m, s, seed) for m in args.malicious for s in args.strategies
        for seed in range(args.seeds)
    ]
    jobs.sort(key=lambda job: job[2] != "trust")  # longest first, so no process idles at the end
    started = time.monotonic()
    with ProcessPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(simulate, jobs))
    wall = time.monotonic() - started
    size = cfg.questions // args.windows
    heads = [f"q{i * size + 1}-{(i + 1) * size}" for i in range(args.windows)]
    print(
        f"{cfg.nodes} nodes (+{cfg.newcomers} at q{cfg.questions // 2}), {cfg.questions} "
        f"questions, explore {cfg.explore}, fanout {cfg.fanout}, {args.seeds} seed(s).\n"
        f"Share of questions answered by an honest competent agent, per {size} questions:"
    )
    print(
        "| malicious | router | " + " | ".join(heads) + " | all | liars, last window "
        "| converged after | newcomers, last window |"
    )
    print("|---" * (len(heads) + 6) + "|")
    for m in args.malicious:
        for s in args.strategies:
            mine = [r for r in runs if r["malicious"] == m and r["strategy"] == s]

            def mean(key: str, mine: list[dict[str, Any]] = mine) -> list[float]:
                return [statistics.fmean(x) for x in zip(*(r[key] for r in mine), strict=True)]

            good, liar, new = mean("good"), mean("liar"), mean("new")
            cells = [statistics.fmean(good[i * size : (i + 1) * size]) for i in range(args.windows)]
            conv = converged_at(good, window=500, final=cells[-1], slack=0.02)
            fair = statistics.fmean(r["fair"] for r in mine)
            print(
                f"| {m:.0%} | {LABELS[s]} | "
                + " | ".join(f"{c:.3f}" for c in cells)
                + f" | {statistics.fmean(good):.3f} | {statistics.fmean(liar[-size:]):.3f} "
                f"| {conv if s == 'trust' else '-'} "
                f"| {statistics.fmean(new[-size:]):.3f} of a fair {fair:.3f} |"
            )
    cpu = sum(r["cpu_s"] for r in runs)
    print(f"wall {wall:.0f} s, cpu {cpu:.0f} s over {args.jobs} processes")


if __name__ == "__main__":
    main()
