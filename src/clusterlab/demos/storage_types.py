"""storage-types: block vs file vs object, as a pod sees each."""

from __future__ import annotations

from clusterlab.demos.base import Context, Demo, Result, Step
from clusterlab.demos.kubeout import mount_of, table

NS = "demo-storage-types"
S3 = "s5cmd --endpoint-url http://$BUCKET_HOST:$BUCKET_PORT"


def df_and_mount(r: Result) -> str:
    """df's table and the /proc/mounts line (source, type, first options) of /data."""
    lines = r.stdout.splitlines()
    return "\n".join(line[:110] for line in lines)


def block_filesystem(r: Result, ctx: Context) -> str | None:
    found = mount_of(r.stdout, "/data")
    if found is None:
        return "nothing is mounted at /data in block-pod"
    source, fstype = found
    if not source.startswith(("/dev/rbd", "/dev/nbd")):
        return f"/data comes from {source}, not from a mapped RBD image (/dev/rbdN or /dev/nbdN)"
    if fstype != "ext4":
        return f"/data is {fstype}, not the ext4 the block StorageClass puts on its images"
    return None


def raw_device(r: Result, ctx: Context) -> str | None:
    lines = r.stdout.split()
    if not lines or not lines[0].startswith("b"):
        return f"/dev/xvda is not a block device: {r.stdout.strip()[:80]!r}"
    size = r.stdout.strip().splitlines()[-1].strip()
    if size != str(1024**3):
        return f"/dev/xvda has {size} bytes, not the 1Gi the claim asked for"
    return None


def shared_filesystem(r: Result, ctx: Context) -> str | None:
    found = mount_of(r.stdout, "/data")
    if found is None:
        return "nothing is mounted at /data in file-pod"
    source, fstype = found
    if fstype not in ("ceph", "fuse.ceph-fuse"):
        return f"/data is {fstype} from {source}, not CephFS (ceph or fuse.ceph-fuse)"
    return None


def object_over_http(r: Result, ctx: Context) -> str | None:
    if r.rc != 0:
        return f"s5cmd failed: {(r.stderr or r.stdout).strip()[-200:]}"
    if "http://" not in r.stdout:
        return "the endpoint printed is not an http:// URL"
    if "hello from the s3-client pod" not in r.stdout:
        return "the object read back is not the one written"
    return None


EXPECTED = {
    ("PersistentVolumeClaim", "fs-volume"): "rook-ceph-block",
    ("PersistentVolumeClaim", "raw-device"): "rook-ceph-block",
    ("PersistentVolumeClaim", "shared-files"): "rook-cephfs",
    ("ObjectBucketClaim", "demo-bucket"): "rook-ceph-bucket",
}


def three_kinds(r: Result, ctx: Context) -> str | None:
    rows = {(row["KIND"], row["NAME"]): row for row in table(r.stdout)}
    for key, cls in EXPECTED.items():
        row = rows.get(key)
        if row is None:
            return f"{key[0]} {key[1]} is missing"
        if row["CLASS"] != cls or row["PHASE"] != "Bound":
            return f"{key[0]} {key[1]}: class {row['CLASS']}, {row['PHASE']} (want {cls}, Bound)"
    return None


def steps(ctx: Context) -> list[Step]:
    ex = ["-n", NS, "exec"]
    return [
        Step(
            say="Three claims for three kinds of storage: two RBD images (one with a "
            "filesystem, one raw), a CephFS share and an S3 bucket. Same cluster, same disks.",
            apply=("namespace.yaml", "block.yaml", "file.yaml", "object.yaml"),
            kubectl=[
                "-n",
                NS,
                "wait",
                "--for=condition=Ready",
                "pod/block-pod",
                "pod/file-pod",
                "pod/s3-client",
                "--timeout=300s",
            ],
        ),
        Step(
            say="Block, as a filesystem: the kernel mapped the RBD image as a local disk "
            "(/dev/rbdN) and put ext4 on it. To the pod it is an ordinary local disk.",
            kubectl=[
                *ex,
                "block-pod",
                "--",
                "sh",
                "-c",
                "df -h /data; grep ' /data ' /proc/mounts",
            ],
            show=df_and_mount,
            check=block_filesystem,
        ),
        Step(
            say="Block, raw (volumeMode: Block): no filesystem at all, a device node the "
            "application writes blocks to - what some databases and Ceph's own OSDs want.",
            kubectl=[
                *ex,
                "block-pod",
                "--",
                "sh",
                "-c",
                "ls -l /dev/xvda; blockdev --getsize64 /dev/xvda",
            ],
            check=raw_device,
        ),
        Step(
            say="File: CephFS mounted over the network (kernel client `ceph` or ceph-fuse). "
            "Many pods on many nodes can mount it at once; the MDS keeps them coherent.",
            kubectl=[*ex, "file-pod", "--", "sh", "-c", "df -h /data; grep ' /data ' /proc/mounts"],
            show=df_and_mount,
            check=shared_filesystem,
        ),
        Step(
            say="Object: nothing is mounted. The claim gave the pod an endpoint, a bucket "
            "and keys; it PUTs and GETs whole objects over HTTP (S3).",
            kubectl=[
                *ex,
                "s3-client",
                "--",
                "sh",
                "-c",
                "echo endpoint http://$BUCKET_HOST:$BUCKET_PORT bucket $BUCKET_NAME; "
                "echo 'hello from the s3-client pod' > /tmp/hello.txt; "
                f"{S3} cp /tmp/hello.txt s3://$BUCKET_NAME/hello.txt && "
                f"{S3} ls s3://$BUCKET_NAME/ && {S3} cat s3://$BUCKET_NAME/hello.txt",
            ],
            check=object_over_http,
            wait=60,
        ),
        Step(
            say="Why databases go on block storage: the filesystem is local to one node, "
            "so fsync and O_DIRECT go straight to one device with no shared-filesystem "
            "locking or metadata server in the write path, and only one writer can hold "
            "it. File storage is for sharing, object storage for whole files over HTTP.",
            kubectl=[
                "-n",
                NS,
                "get",
                "pvc,objectbucketclaims",
                "-o",
                "custom-columns=KIND:.kind,NAME:.metadata.name,"
                "CLASS:.spec.storageClassName,MODE:.spec.volumeMode,"
                "ACCESS:.spec.accessModes[*],PHASE:.status.phase",
            ],
            check=three_kinds,
        ),
        Step(
            say="Empty the bucket, so deleting the claim removes it with nothing inside.",
            kubectl=[*ex, "s3-client", "--", "sh", "-c", f"{S3} rm 's3://$BUCKET_NAME/*'"],
            may_fail=True,
        ),
    ]


DEMO = Demo(
    name="storage-types",
    summary="block vs file vs object: an RBD disk (filesystem and raw), a CephFS share, an S3 bucket",
    point="block is a local disk for one node, file is a shared filesystem, object is HTTP; "
    "databases go on block",
    minutes=6,
    needs=("rbd",),
    steps=steps,
)
