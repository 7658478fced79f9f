"""redis-ha: Redis with Sentinel on rook-ceph-block; kill the primary, a replica is
promoted, the keys stay; an RDB backup on a second volume and a restore from it.

The commands and their checks come from redisops (tested against real Redis and Sentinel);
here they run inside the pods through `kubectl exec`.
"""

from __future__ import annotations

from clusterlab.demos import redisops
from clusterlab.demos.base import Context, Demo, Result, Step
from clusterlab.demos.redisops import Addr, Op

KEYS = {"talk": "kubernetes-storage", "demo": "redis-ha", "answer": "42"}
LOCAL_SENTINEL = Addr("127.0.0.1", 26379)  # from a sentinel container
BACKUP_FILE = "/backup/dump.rdb"
RESTORE_DIR = "/restore"
RESTORE_PORT = 6380


def fqdn(ctx: Context, pod: str) -> str:
    domain = ctx.vars.get("clusterlab_dns_domain", "cluster.local")
    return f"{pod}.redis.{DEMO.ns}.svc.{domain}"


def _step(say: str, pod: str, container: str, op: Op, *, negate: str = "") -> Step:
    """An Op run inside a pod; negate: the op's check must FAIL (that message otherwise)."""

    def check(res: Result, _ctx: Context) -> str | None:
        problem = op.check(res.stdout + res.stderr)
        if negate:
            return None if problem else negate
        return problem

    kubectl = ["-n", DEMO.ns, "exec", pod, "-c", container, "--", *op.argv]
    return Step(say=say, kubectl=kubectl, check=check, wait=op.wait, may_fail=bool(negate))


def steps(ctx: Context) -> list[Step]:
    ns = DEMO.ns
    old = Addr(fqdn(ctx, "redis-0"), 6379)
    remote = Addr(fqdn(ctx, "redis-1"), 26379)  # a sentinel, from the backup pod

    def starts_as_primary(res: Result, _ctx: Context) -> str | None:
        addr = redisops.parse_addr(res.stdout)
        return None if addr == old else f"Sentinel names {addr}, not {old}"

    def replica_again(res: Result, _ctx: Context) -> str | None:
        role = res.stdout.split()[:1]
        return None if role == ["slave"] else f"redis-0 is {role}, not a replica yet"

    return [
        Step(
            say="Three Redis pods, each with its own rook-ceph-block volume and a Sentinel.",
            apply=("namespace.yaml", "redis.yaml"),
            kubectl=["-n", ns, "rollout", "status", "statefulset/redis", "--timeout=30s"],
            wait=600,
        ),
        Step(
            say="Sentinel names the primary: redis-0.",
            kubectl=[
                "-n",
                ns,
                "exec",
                "redis-1",
                "-c",
                "sentinel",
                "--",
                *redisops.primary(LOCAL_SENTINEL).argv,
            ],
            check=starts_as_primary,
            wait=60,
        ),
        _step(
            "Write keys on the primary; WAIT until both replicas have them.",
            "redis-1",
            "sentinel",
            redisops.write_keys(LOCAL_SENTINEL, KEYS, replicas=2),
        ),
        _step("Read them back.", "redis-1", "sentinel", redisops.read_keys(LOCAL_SENTINEL, KEYS)),
        Step(
            say="Kill the primary: delete pod redis-0.",
            kubectl=["-n", ns, "delete", "pod", "redis-0"],
        ),
        _step(
            f"Sentinel notices ({redisops.DOWN_AFTER_MS} ms), agrees (quorum "
            f"{redisops.QUORUM}) and promotes a replica.",
            "redis-1",
            "sentinel",
            redisops.promoted(LOCAL_SENTINEL, old),
        ),
        _step(
            "The keys are still there, on the new primary.",
            "redis-1",
            "sentinel",
            redisops.read_keys(LOCAL_SENTINEL, KEYS),
        ),
        Step(
            say="redis-0 comes back on its own volume — as a replica of the new primary.",
            kubectl=[
                "-n",
                ns,
                "exec",
                "redis-0",
                "-c",
                "redis",
                "--",
                "redis-cli",
                "--raw",
                "ROLE",
            ],
            check=replica_again,
            wait=180,
        ),
        Step(
            say="Backup: a second volume (claim redis-backup) in a pod of its own.",
            apply=("backup.yaml",),
            kubectl=[
                "-n",
                ns,
                "wait",
                "--for=condition=Ready",
                "pod/redis-backup",
                "--timeout=30s",
            ],
            wait=300,
        ),
        _step(
            "BGSAVE: the primary snapshots its keys to dump.rdb …",
            "redis-backup",
            "redis",
            redisops.bgsave(remote),
        ),
        _step(
            "… wait until the save is done and succeeded …",
            "redis-backup",
            "redis",
            redisops.bgsave_done(remote),
        ),
        _step(
            "… in its data directory, on its own volume.",
            "redis-backup",
            "redis",
            redisops.data_dir(remote),
        ),
        _step(
            f"Copy a snapshot onto the backup volume ({BACKUP_FILE}).",
            "redis-backup",
            "redis",
            redisops.backup(remote, BACKUP_FILE),
        ),
        _step(
            "The backup is a sound RDB file with our keys.",
            "redis-backup",
            "redis",
            redisops.check_rdb(BACKUP_FILE, len(KEYS)),
        ),
        _step(
            "Disaster: the keys are deleted.",
            "redis-backup",
            "redis",
            redisops.forget_keys(remote, KEYS),
        ),
        _step(
            "Gone.",
            "redis-backup",
            "redis",
            redisops.read_keys(remote, KEYS),
            negate="the keys are still there after DEL",
        ),
        _step(
            "Restore: a fresh server, dump.rdb placed in its empty directory, AOF off, started.",
            "redis-backup",
            "redis",
            redisops.restore(BACKUP_FILE, RESTORE_DIR, RESTORE_PORT),
        ),
        _step(
            "The keys are back.",
            "redis-backup",
            "redis",
            redisops.restored_keys(RESTORE_PORT, KEYS),
        ),
    ]


DEMO = Demo(
    name="redis-ha",
    summary="Redis + Sentinel on rook-ceph-block: kill the primary, a replica takes over; "
    "RDB backup to a second volume and restore",
    point="Replication plus Sentinel keeps the data available when the primary dies; an RDB "
    "backup on a separate volume brings deleted keys back.",
    minutes=7,
    steps=steps,
    needs=("rbd",),
    extra={"sentinel_conf": redisops.sentinel_conf("$PRIMARY", 6379)},
)
