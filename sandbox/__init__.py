"""learnact.sandbox: isolated execution of untrusted action code with proxied primitive calls."""

from learnact.sandbox.config import BackendName, RuntimeName, SandboxConfig
from learnact.sandbox.result import ErrorInfo, ExecutionResult, ExecutionStatus, PrimitiveCall
from learnact.sandbox.sandbox import Sandbox
from learnact.sandbox.session import Session
from learnact.sandbox.transport import SandboxUnavailable

__all__ = [
    "BackendName",
    "ErrorInfo",
    "ExecutionResult",
    "ExecutionStatus",
    "PrimitiveCall",
    "RuntimeName",
    "Sandbox",
    "SandboxConfig",
    "SandboxUnavailable",
    "Session",
]
