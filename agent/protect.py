"""What the agent does for the workspace when the control plane has been out of reach too long.

Nobody else can save the work then: the provider may take the machine back at any time (an
unpaid bill, a host failure) and the control plane would not know to snapshot first. The
snapshot engine (issue 4) runs here once it exists.
"""

from __future__ import annotations

import logging

log = logging.getLogger("dumont.agent")


def protect_workspace() -> None:
    log.critical("no snapshot engine in this version: cannot protect the workspace")
