"""faceid-poller: fetch Tencent Cloud FaceID verification results in bulk.

The command line (`poller run`, `poller report`, `poller simulate`) is the main interface; these
names are for running a batch from Python with the same wiring the command uses.
"""

from poller.engine import Engine, FatalRunError, RunStats
from poller.records import Detail, JsonlSink, Status
from poller.resume import OutputLock, load_resume_state
from poller.runner import run_job
from poller.settings import ConfigError, Credentials, Settings, build_settings
from poller.signing import sign
from poller.tokens import InputError, read_tokens

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
