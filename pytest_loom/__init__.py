"""pytest-loom: a regression lab for iterative AI-agent loops.

Golden loop scenarios run under a mock LLM and a fake clock, checkpoint every step, and
snapshot their run record, so CI says when a change altered how a loop runs: its steps, its
cost and tokens, and why it stopped.

The public API is re-exported here and loaded on first use, so the pytest plugin (which imports
this package) costs nothing until the lab is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .budget import Budget, Spend
    from .cassette import (
        CASSETTE_VERSION,
        Cassette,
        CassetteError,
        RecordedCall,
        RecordedRequest,
        RecordedResponse,
        load_cassette,
    )
    from .clock import ClockError, FakeClock
    from .context import StepContext
    from .convergence import Progress, predicate, score_at_least, score_plateau
    from .diff import diff_records
    from .drift import SummaryFormatError
    from .entry import EntryPointError
    from .intercept import serve_sdks
    from .invariants import InvariantViolation, RuntimeContract, check_run
    from .lab import Lab
    from .llm import (
        LLMError,
        LLMTimeoutError,
        MalformedToolCallError,
        Message,
        MockLLM,
        MockLLMError,
        PricingError,
        RateLimitError,
        Request,
        Response,
        ServerError,
        UnconsumedTurnsError,
        UnmatchedRequestError,
    )
    from .matching import IgnoreRule
    from .netguard import NetworkBlockedError, block_network
    from .policy import PolicyError
    from .properties import PropertyFailure, property_test
    from .record import (
        RECORD_VERSION,
        BudgetLimit,
        Event,
        LLMCall,
        RecordError,
        RunRecord,
        RuntimeInfo,
        Step,
        Stop,
        StopReason,
        ToolCall,
        ToolCallRequest,
        Totals,
    )
    from .recorded import CassetteMismatchError, RecordedLLM, UnusedRecordingsError
    from .recordmode import RecordMode
    from .reference import Done, Loop, RunOutcome, Stalled
    from .replay import DivergenceError, Replay, resume_point
    from .replaying import ReplayOutcome, replay_saved
    from .reports import write_reports
    from .reproducer import scenario_yaml
    from .runlog import RunLogError, SavedRun, Session, find_run, sessions
    from .runner import ScenarioRun, run_scenario
    from .runtimes import Runtime, RuntimeNotAvailable, get_runtime
    from .scenario import Scenario, ScenarioError, load_scenario
    from .script import LLMErrorKind, Match, Price, Rule, Turn
    from .snapshot import RunRecordExtension
    from .store import CheckpointError, CheckpointStore
    from .summary import Summary, load_summary, merge_summaries
    from .transcript import Transcript

_EXPORTS: dict[str, str] = {
    "Budget": "budget",
    "Spend": "budget",
    "CASSETTE_VERSION": "cassette",
    "Cassette": "cassette",
    "CassetteError": "cassette",
    "RecordedCall": "cassette",
    "RecordedRequest": "cassette",
    "RecordedResponse": "cassette",
    "load_cassette": "cassette",
    "ClockError": "clock",
    "FakeClock": "clock",
    "StepContext": "context",
    "Progress": "convergence",
    "predicate": "convergence",
    "score_at_least": "convergence",
    "score_plateau": "convergence",
    "diff_records": "diff",
    "EntryPointError": "entry",
    "serve_sdks": "intercept",
    "Lab": "lab",
    "LLMError": "llm",
    "LLMTimeoutError": "llm",
    "MalformedToolCallError": "llm",
    "Message": "llm",
    "MockLLM": "llm",
    "MockLLMError": "llm",
    "PricingError": "llm",
    "RateLimitError": "llm",
    "Request": "llm",
    "Response": "llm",
    "ServerError": "llm",
    "UnconsumedTurnsError": "llm",
    "UnmatchedRequestError": "llm",
    "IgnoreRule": "matching",
    "NetworkBlockedError": "netguard",
    "block_network": "netguard",
    "RECORD_VERSION": "record",
    "BudgetLimit": "record",
    "Event": "record",
    "LLMCall": "record",
    "RecordError": "record",
    "RunRecord": "record",
    "RuntimeInfo": "record",
    "Step": "record",
    "Stop": "record",
    "StopReason": "record",
    "ToolCall": "record",
    "ToolCallRequest": "record",
    "Totals": "record",
    "CassetteMismatchError": "recorded",
    "RecordedLLM": "recorded",
    "UnusedRecordingsError": "recorded",
    "RecordMode": "recordmode",
    "Done": "reference",
    "Loop": "reference",
    "RunOutcome": "reference",
    "Stalled": "reference",
    "DivergenceError": "replay",
    "Replay": "replay",
    "resume_point": "replay",
    "ReplayOutcome": "replaying",
    "replay_saved": "replaying",
    "RunLogError": "runlog",
    "SavedRun": "runlog",
    "Session": "runlog",
    "find_run": "runlog",
    "sessions": "runlog",
    "ScenarioRun": "runner",
    "run_scenario": "runner",
    "InvariantViolation": "invariants",
    "RuntimeContract": "invariants",
    "check_run": "invariants",
    "PropertyFailure": "properties",
    "property_test": "properties",
    "scenario_yaml": "reproducer",
    "Runtime": "runtimes",
    "RuntimeNotAvailable": "runtimes",
    "get_runtime": "runtimes",
    "Scenario": "scenario",
    "ScenarioError": "scenario",
    "load_scenario": "scenario",
    "LLMErrorKind": "script",
    "Match": "script",
    "Price": "script",
    "Rule": "script",
    "Turn": "script",
    "RunRecordExtension": "snapshot",
    "CheckpointError": "store",
    "CheckpointStore": "store",
    "Transcript": "transcript",
    "SummaryFormatError": "drift",
    "PolicyError": "policy",
    "write_reports": "reports",
    "Summary": "summary",
    "load_summary": "summary",
    "merge_summaries": "summary",
}

__all__ = [
    "CASSETTE_VERSION",
    "RECORD_VERSION",
    "Budget",
    "BudgetLimit",
    "Cassette",
    "CassetteError",
    "CassetteMismatchError",
    "CheckpointError",
    "CheckpointStore",
    "ClockError",
    "DivergenceError",
    "Done",
    "EntryPointError",
    "Event",
    "FakeClock",
    "IgnoreRule",
    "InvariantViolation",
    "LLMCall",
    "LLMError",
    "LLMErrorKind",
    "LLMTimeoutError",
    "Lab",
    "Loop",
    "MalformedToolCallError",
    "Match",
    "Message",
    "MockLLM",
    "MockLLMError",
    "NetworkBlockedError",
    "PolicyError",
    "Price",
    "PricingError",
    "Progress",
    "PropertyFailure",
    "RateLimitError",
    "RecordError",
    "RecordMode",
    "RecordedCall",
    "RecordedLLM",
    "RecordedRequest",
    "RecordedResponse",
    "Replay",
    "ReplayOutcome",
    "Request",
    "Response",
    "Rule",
    "RunLogError",
    "RunOutcome",
    "RunRecord",
    "RunRecordExtension",
    "Runtime",
    "RuntimeContract",
    "RuntimeInfo",
    "RuntimeNotAvailable",
    "SavedRun",
    "Scenario",
    "ScenarioError",
    "ScenarioRun",
    "ServerError",
    "Session",
    "Spend",
    "Stalled",
    "Step",
    "StepContext",
    "Stop",
    "StopReason",
    "Summary",
    "SummaryFormatError",
    "ToolCall",
    "ToolCallRequest",
    "Totals",
    "Transcript",
    "Turn",
    "UnconsumedTurnsError",
    "UnmatchedRequestError",
    "UnusedRecordingsError",
    "block_network",
    "check_run",
    "diff_records",
    "find_run",
    "get_runtime",
    "load_cassette",
    "load_scenario",
    "load_summary",
    "merge_summaries",
    "predicate",
    "property_test",
    "replay_saved",
    "resume_point",
    "run_scenario",
    "scenario_yaml",
    "score_at_least",
    "score_plateau",
    "serve_sdks",
    "sessions",
    "write_reports",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_loom' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
