"""Layer 4: snapshot records on the control plane. The bytes go from the machine's agent to
object storage directly; here are what was asked, what the agent reported, whether storage
holds it (verify), retention, deletion and garbage collection.

    models.py     Workspace (a repository: prefix and sealed key), Snapshot
    services.py   every write; jobs.py the storage work of tasks (outside transactions)
    storage.py    storage settings as the agent and the control plane use them; keys.py seals keys
    receivers.py  a snapshot command's end; the settings commands and installs carry (agent hooks)
    signals.py    workspace_stored, for the ledger
"""
