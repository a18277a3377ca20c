"""faceid-poller: fetch Tencent Cloud FaceID verification results in bulk.

The command line (`poller run`, `poller report`, `poller simulate`) is the main interface; these
names are for running a batch from Python with the same wiring the command uses.
"""

from poller.api.outcomes import Status
from poller.api.signing import sign
from poller.config.credentials import Credentials
from poller.config.errors import ConfigError
from poller.config.settings import Detail, Settings, build_settings
from poller.input.tokens import InputError, read_tokens
from poller.job import run_job
from poller.output.lock import OutputLock
from poller.output.records import JsonlSink
from poller.output.resume import load_resume_state
from poller.pipeline.engine import Engine
from poller.pipeline.stats import FatalRunError, RunStats

__all__ = [
    "ConfigError",
    "Credentials",
    "Detail",
    "Engine",
    "FatalRunError",
    "InputError",
    "JsonlSink",
    "OutputLock",
    "RunStats",
    "Settings",
    "Status",
    "build_settings",
    "load_resume_state",
    "read_tokens",
    "run_job",
    "sign",
]
