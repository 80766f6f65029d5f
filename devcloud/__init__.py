"""devcloud: the vast.ai REST API on loopback, with machines that are real on this host.

    python -m devcloud --host 127.0.0.1 --port 0 --state-dir DIR --api-key KEY \
        [--boot-delay SPEC] [--time-scale F] [--seed N] [--fail-rate F] [--offers N]

prints `devcloud ready http://127.0.0.1:PORT` once it serves. A machine is a directory
(`DIR/machines/<id>/disk/`, its home and working directory), the processes started on it and
an SSH server of its own on 127.0.0.1 (paramiko; public-key auth; exec, SFTP; no interactive
shell). Every machine process carries `DEVCLOUD_MACHINE=<run-id>:<machine-id>` and
`DEVCLOUD_URL`, `DEVCLOUD_MACHINE_ID`, `DEVCLOUD_MACHINE_TOKEN`; stop and destroy kill every
process carrying the marker, detached ones included. Start-up removes what a previous run on
the same state dir left behind. Tests drive it with `devcloud.testing.run_devcloud`.

Lifecycle: create -> actual_status null for 10% of the boot delay -> "loading" (ssh_host and
ssh_port already set, SSH refused) for the boot delay -> "running" (SSH listens, ports["22/tcp"]
set, onstart runs). Stop is synchronous (processes killed, SSH closed, disk kept, "stopped");
start goes through "loading" again with the same host key and, when free, the same port.
Destroy is synchronous too; the offer is rentable again afterwards.

Like a real marketplace, a share of new machines (--fail-rate, default 0.1; 0 under
devcloud.testing) never becomes ready or dies: each such machine gets one of the per-machine
faults below, drawn from a seeded generator. --offers sizes the catalog (default 40).

Admin API (account key), never subject to faults:
    GET  /_devcloud/machines               internals: dir, pids, ssh port, token, fault flags
    GET  /_devcloud/destroyed              machines destroyed so far, with when (Unix time)
    GET  /_devcloud/machines/ID/gpu        also with `Authorization: Bearer <machine token>`
    PUT  /_devcloud/machines/ID/gpu        {"utilization": 37} or {"utilization": [37, 0]}
    GET|POST|DELETE /_devcloud/faults      read / merge / reset the knobs below

Fault knobs (POST merges: a key given replaces that knob's value; DELETE resets all, boot delay
and time scale back to the command line's):
    vanish_offers: N      the next N creates that pass validation answer 404 no_such_ask; the
                          offer itself stays available.
    stuck_loading: N      the next N machines created never leave "loading" (SSH never listens).
    exit_after_running: N the next N machines created reach "running", then exit_delay_s later
                          their processes are killed, SSH closes, actual_status "exited",
                          intended_status still "running".
    oci_error: N          the next N machines created end their loading in actual_status
                          "created" with a status_msg containing "OCI runtime create failed".
    rate_limit: N         the next N vast API requests (any endpoint, before auth) get 429 with
                          no Retry-After; bodies alternate: plain text "Too Many Requests", then
                          JSON {"detail": "API requests too frequent ..."}, and so on.
    lose_create_reply: N  the next N successful creates do create the machine, but the reply is
                          lost: alternately the connection is closed without any response, then
                          a 502 with an HTML body.
    ssh_delay_s: X        machines created from now on hold every new SSH connection X real
                          seconds (not time-scaled) before sending the SSH banner.
    exit_delay_s: X       real seconds (not time-scaled) from "running" to "exited" for
                          exit_after_running machines created from now on; default 0.5.
    boot_delay: SPEC      boot delay of boots started from now on.
    time_scale: F         multiplier of boot delays started from now on.
    fail_rate: F          share (0-1) of machines created from now on that get a random
                          per-machine fault (stuck_loading, exit_after_running or oci_error).
    machine_profiles: [{...}, ...]
                          the next machines created take these profiles in order, instead of
                          the knobs above: flags stuck_loading / exit_after_running / oci_error,
                          and real seconds boot_delay_s (every boot; default: the boot clock),
                          ssh_delay_s, exit_delay_s, create_delay_s (the create request waits
                          this long before the machine exists, then answers).
Per-machine faults (stuck_loading, exit_after_running, oci_error) belong to the machine and
apply again if it is stopped and started.
"""
