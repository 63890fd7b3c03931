#!/usr/bin/env python3
"""Write a one-layer container image as a docker-archive tar, without Docker or a registry.

hack/cluster.sh uses it for the pause image and hack/images.sh for the test workload image; the tar
is loaded with `ctr -n k8s.io images import` (and, for kind, `kind load image-archive`).

    image_tar.py --tag localhost/x/pause:3.10 --file /path/pause:/pause --entrypoint /pause --out p.tar

--file SRC:DEST[:MODE] copies a host file into the image; --symlink DEST:TARGET adds a symlink.
The output is reproducible: fixed timestamps and owners, entries sorted.
"""
import argparse
import hashlib
import io
import json
import os
import sys
import tarfile


def _add_dirs(tar, path, seen):
    parts = path.strip("/").split("/")[:-1]
    for i in range(1, len(parts) + 1):
        d = "/".join(parts[:i])
        if d in seen:
            continue
        seen.add(d)
        info = tarfile.TarInfo(d)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)


def build_layer(files, symlinks):
    """files: [(src, dest, mode)], symlinks: [(dest, target)] -> tar bytes."""
    buf = io.BytesIO()
    seen = set()
    entries = sorted([(d.strip("/"), "file", (s, m)) for s, d, m in files]
                     + [(d.strip("/"), "link", t) for d, t in symlinks])
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        # /tmp and /etc exist in every image: programs and the runtime expect them.
        for d, mode in (("etc", 0o755), ("tmp", 0o1777)):
            seen.add(d)
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = mode
            tar.addfile(info)
        for dest, kind, what in entries:
            _add_dirs(tar, dest, seen)
            info = tarfile.TarInfo(dest)
            if kind == "link":
                info.type = tarfile.SYMTYPE
                info.linkname = what
                info.mode = 0o777
                tar.addfile(info)
            else:
                src, mode = what
                with open(src, "rb") as f:
                    data = f.read()
                info.size = len(data)
                info.mode = mode if mode is not None else (os.stat(src).st_mode & 0o7777)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_archive(out, tag, layer, entrypoint, cmd, env, workdir):
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Env": env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Entrypoint": entrypoint or None, "Cmd": cmd or None, "WorkingDir": workdir},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "hack/k8s/image_tar.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = diff_id[len("sha256:"):] + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": [layer_name]}]).encode()
    tmp = out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in ((layer_name, layer), (config_name, config_bytes), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tag", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--file", action="append", default=[], metavar="SRC:DEST[:MODE]")
    ap.add_argument("--symlink", action="append", default=[], metavar="DEST:TARGET")
    ap.add_argument("--entrypoint", action="append", default=[])
    ap.add_argument("--cmd", action="append", default=[])
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--workdir", default="/")
    a = ap.parse_args(argv)
    files = []
    for spec in a.file:
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            ap.error(f"--file {spec!r}: expected SRC:DEST[:MODE]")
        mode = int(parts[2], 8) if len(parts) == 3 else None
        if not os.path.isfile(parts[0]):
            print(f"image_tar.py: error: no such file: {parts[0]}", file=sys.stderr)
            return 1
        files.append((parts[0], parts[1], mode))
    links = []
    for spec in a.symlink:
        dest, sep, target = spec.partition(":")
        if not sep:
            ap.error(f"--symlink {spec!r}: expected DEST:TARGET")
        links.append((dest, target))
    layer = build_layer(files, links)
    write_archive(a.out, a.tag, layer, a.entrypoint, a.cmd, a.env, a.workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
