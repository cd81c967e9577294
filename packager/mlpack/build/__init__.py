"""`mlpack build`: plan (pure), then run the steps, then finish the artifact. See run.py;
summary.py is what the command prints at the end."""

from .plan import BuildPlan, host_versions, memory_mb, plan_build
from .request import BuildRequest, check_name, default_name
from .run import BuildResult, build

__all__ = ["BuildPlan", "BuildRequest", "BuildResult", "build", "check_name", "default_name", "host_versions",
           "memory_mb", "plan_build"]
