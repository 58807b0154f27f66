"""A tool-using fixer: the model reads failing tests, patches files, reruns the tests.

The "repository" is the loop state (file name -> text), and the tools are plain functions over
it, so the loop is fully deterministic. The run completes when the test command passes.
"""

from __future__ import annotations

from typing import Any

from pytest_loom import Done, Lab, Loop, StepContext

MODEL = "claude-sonnet-4"
TOOLS = [
    {"name": "read_file", "description": "Read a file of the repository"},
    {"name": "replace", "description": "Replace text in a file"},
    {"name": "run_tests", "description": "Run the test suite"},
]


def run_tests(files: dict[str, str]) -> dict[str, Any]:
    """The 'test suite': every line `assert <expr>` in tests.txt must hold against calc.py."""
    namespace: dict[str, Any] = {}
    exec(files["calc.py"], namespace)
    failures = [
        line
        for line in files["tests.txt"].splitlines()
        if line.startswith("assert ") and not eval(line.removeprefix("assert "), namespace)
    ]
    return {"passed": not failures, "failures": failures}


def fixer_step(state: dict[str, Any], ctx: StepContext) -> Any:
    files = dict(state["files"])
    report = state.get("report") or ctx.tool("run_tests", run_tests, files=files)
    if report["passed"]:
        return Done({**state, "report": report})
    reply = ctx.llm.complete(
        [
            {"role": "system", "content": "You fix failing tests with the tools you are given."},
            {"role": "user", "content": f"Failing: {'; '.join(report['failures'])}"},
        ],
        model=MODEL,
        tools=TOOLS,
    )
    for call in reply.tool_calls:
        if call.name == "replace":
            path, old, new = call.args["path"], call.args["old"], call.args["new"]
            files[path] = ctx.tool(
                "replace", lambda p, o, n: files[p].replace(o, n), p=path, o=old, n=new
            )
        elif call.name == "read_file":
            ctx.tool("read_file", lambda p: files[p], p=call.args["path"])
    report = ctx.tool("run_tests", run_tests, files=files)
    return {"files": files, "report": report, "attempts": state.get("attempts", 0) + 1}


def build(lab: Lab) -> Loop:
    return lab.loop(fixer_step, stall_after=lab.options.get("stall_after", 3))
