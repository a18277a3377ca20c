"""faceid-poller: fetch Tencent Cloud FaceID verification results in bulk.

The command line (`poller run`, `poller report`, `poller simulate`) is the main interface. These
names are for scheduling the job from Python (an Airflow or Dagster task, a notebook), on the
very path the command takes:

- `run_batch(tokens, output, settings)`: what `poller run` does, blocking; returns a summary.
- `poll(tokens, settings)`: each token's `Result` as it settles, in an async iterator.
- `build_settings(...)` or `Settings(...)` with `Credentials`: the settings of a run.
- `Sink`: where lines go; `JsonlSink` is the JSON-lines file.
- `SharedQuota(url, rate=20)`: your backend's live calls take slots from the schedule the
  pollers share through Redis (`--shared-quota`), so together they stay under the quota.
- `PollerError`: the base of every error they raise; each one is a sentence for a person.

Everything else lives in the stage packages (poller.input, poller.api, poller.output,
poller.pipeline, ...) and may change between releases.
"""

from poller.api.outcomes import Status
from poller.config.credentials import Credentials
from poller.config.errors import ConfigError
from poller.config.settings import Detail, Settings, build_settings
from poller.errors import PollerError
from poller.input.tokens import InputError
from poller.job import BatchSummary, run_batch
from poller.output.lock import LockedError
from poller.output.records import ErrorInfo
from poller.output.result import LineFormatError, Result
from poller.output.resume import ResumeError
from poller.output.sink import JsonlSink, OutputFileError, Sink
from poller.pipeline.stats import FatalRunError, RunStats
from poller.polling import Poll, poll
from poller.quota.shared import SharedQuota, SharedQuotaLost, SharedQuotaUnavailable

__all__ = [
    "BatchSummary",
    "ConfigError",
    "Credentials",
    "Detail",
    "ErrorInfo",
    "FatalRunError",
    "InputError",
    "JsonlSink",
    "LineFormatError",
    "LockedError",
    "OutputFileError",
    "Poll",
    "PollerError",
    "Result",
    "ResumeError",
    "RunStats",
    "Settings",
    "SharedQuota",
    "SharedQuotaLost",
    "SharedQuotaUnavailable",
    "Sink",
    "Status",
    "build_settings",
    "poll",
    "run_batch",
]
