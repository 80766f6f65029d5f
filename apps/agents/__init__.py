"""Layer 3: the agent on each machine, as the control plane sees it.

    models.py      Agent (token, health, newest sample), AgentSample (a ring), AgentCommand
    services.py    tokens, commands, install progress, health
    heartbeats.py  the heartbeat: one statement authenticates, stores samples, delivers commands
    api.py         POST /api/v1/agent/status (a plain Django view)
    middleware.py  the heartbeat's fast path past the page middleware
    install.py     install the agent over SSH; dist.py builds its wheel
    hooks.py       what higher layers add to commands and the install (snapshot settings)
    signals.py     command_updated, for snapshots and wakes
    receivers.py   install on machine_ready; revoke when the machine stops or goes

The agent itself is the `agent/` package; what both sides share is `agent.wire`.
"""
