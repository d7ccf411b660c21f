"""An agent in code with a tool: it finds the arithmetic in a question and computes it.

Host it from a node's config::

    [[agents]]
    handler = "meshnode.examples.calculator:agent"

or from a program: ``meshnode.run_node(home, agents=[calculator.agent])``. Ask it
``meshnode ask "What is 12 * (3 + 4)?"``.

The tool is a small exact evaluator over Python's parser (numbers, + - * / // % **, and
parentheses; no names, no calls), bounded so that no question can make it run long or
allocate much. It reports its progress, attaches the result as data, and refuses a question
without arithmetic with a reason the asker sees (:class:`meshnode.AgentFailed`).
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable
from fractions import Fraction

import meshnode

MAX_EXPRESSION = 200
MAX_EXPONENT = 64
MAX_DIGITS = 200
_CANDIDATE = re.compile(r"[-+*/%().\d\s^]+")
_OPS: dict[type, Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
}


def find_expression(question: str) -> str | None:
    """The longest run of the question that looks like arithmetic with an operator in it."""
    runs = [m.group().strip(" .") for m in _CANDIDATE.finditer(question)]
    runs = [r for r in runs if re.search(r"\d", r) and re.search(r"[-+*/%^]", r.lstrip("-"))]
    return max(runs, key=len, default=None)


def _value(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _value(node.operand)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp):
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow):
            if right.denominator != 1 or abs(right) > MAX_EXPONENT:
                raise ValueError(f"exponents must be whole numbers up to {MAX_EXPONENT}")
            result = left ** int(right)
        elif type(node.op) in _OPS:
            if isinstance(node.op, ast.Div | ast.FloorDiv | ast.Mod) and right == 0:
                raise ValueError("division by zero")
            result = _OPS[type(node.op)](left, right)
        else:
            raise ValueError("unsupported operator")
        if len(str(result.numerator)) + len(str(result.denominator)) > MAX_DIGITS:
            raise ValueError("the numbers get too large")
        return result
    raise ValueError("only numbers, + - * / // % ** and parentheses are allowed")


def evaluate(expression: str) -> Fraction:
    """The exact value of ``expression``; ValueError if it is not plain arithmetic."""
    if len(expression) > MAX_EXPRESSION:
        raise ValueError(f"expressions are limited to {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError:
        raise ValueError(f"{expression!r} is not an arithmetic expression") from None
    return _value(tree.body)


def _shown(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return f"{value.numerator}/{value.denominator} (about {float(value):.6g})"


async def answer(ctx: meshnode.Context) -> meshnode.Reply:
    expression = find_expression(ctx.question)
    if expression is None:
        raise meshnode.AgentFailed("I found no arithmetic in the question (try: 12 * (3 + 4))")
    await ctx.progress(f"computing {expression}")
    try:
        value = evaluate(expression)
    except ValueError as exc:
        raise meshnode.AgentFailed(f"cannot compute {expression!r}: {exc}") from None
    return meshnode.Reply(
        # Just the result: the asker judges an answer without citations by how close it
        # stays to the question, and a calculation restated is as close as it gets.
        f"{expression} = {_shown(value)}",
        data={"expression": expression, "numerator": str(value.numerator),
              "denominator": str(value.denominator)},
    )


agent = meshnode.Agent(
    name="calculator",
    description="Computes arithmetic exactly: sums, products, powers, fractions.",
    skills=[meshnode.Skill(
        "Arithmetic", "Evaluate an arithmetic expression exactly: add, subtract, multiply, "
        "divide, powers, remainders, parentheses.",
        tags=("calculate", "compute", "arithmetic", "math", "sum", "product", "plus", "times",
              "multiply", "divide"),
        examples=("What is 12 * (3 + 4)?", "Calculate 2**10 - 24", "How much is 7/8 + 1/3?"),
    )],
    handler=answer,
)
