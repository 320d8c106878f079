"""The cluster tests' view of the deployed application builder: the real one, re-exported."""

from actors.supervisor import SUPERVISOR, EngineSupervisor
from serve_app import build_from_env

__all__ = ["SUPERVISOR", "EngineSupervisor", "build_from_env"]
