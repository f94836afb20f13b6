#!/usr/bin/env python3
"""Checks that the rendered Deployments give the daemons secret files they accept.

usage: check_pod_secrets.py RENDERED.yaml BIN_DIR TEMPLATES_DIR COPY_SECRETS
       check_pod_secrets.py --root IMAGE_ROOTFS RENDERED.yaml

The first form runs the programs of BIN_DIR (a build) with the templates and copy-secrets of the
tree; the second runs everything from an image's root filesystem (`podman image mount`), with
the paths the manifests name, chrooted into it.

For each Deployment in RENDERED.yaml (kustomize output with its Secrets and ConfigMap):
  1. the pod runs as a numeric non-root user and group, with runAsNonRoot and an fsGroup;
  2. its volumes are laid out in a scratch directory the way the kubelet lays them out:
     Secret and ConfigMap files owned by root, with the volume's defaultMode, and, because the
     pod has an fsGroup, group fsGroup and the kubelet's read-only mask 0440 added to the mode
     (pkg/volume SetVolumeOwnership); an emptyDir owned by root:fsGroup, mode 2777;
  3. in a private mount namespace those directories are bind-mounted at the mountPaths, and
     the init container (COPY_SECRETS, the image's copy-secrets) runs as the pod's uid/gid with
     fsGroup as supplementary group, like the kubelet starts it;
  4. the daemon itself runs the same way with -n on the ConfigMap's noticecast.conf: it must
     print "configuration OK" (it reads every secret file it names and checks its mode);
  5. control: the daemon pointed at the Secret volume itself (as if mounted without the copy)
     must refuse it with exit 78, "accessible by group": the layout of step 2 is what makes
     the copy necessary, so if this stops failing the model or the daemon's check changed;
  6. control: the Secret volume as the old manifest had it, defaultMode 0400 and no fsGroup
     (root:root 0400), must fail with exit 78, "Permission denied".

Needs root (chown, mount namespace, setpriv).  Exit 0 all good, 1 a check failed, 77 skipped.
"""
import base64
import os
import shutil
import subprocess
import sys
import tempfile

import yaml

KUBELET_RO_MASK = 0o440  # what the kubelet ORs into a read-only volume's files with fsGroup


def fail(msg):
    print("check_pod_secrets: FAIL: " + msg)
    return 1


def pod_ids(name, spec):
    sc = spec.get("securityContext") or {}
    uid, gid, fsg = sc.get("runAsUser"), sc.get("runAsGroup"), sc.get("fsGroup")
    for what, v in (("runAsUser", uid), ("runAsGroup", gid), ("fsGroup", fsg)):
        if not isinstance(v, int) or v <= 0:
            raise ValueError("%s: pod securityContext.%s must be a number > 0, is %r" % (name, what, v))
    if sc.get("runAsNonRoot") is not True:
        raise ValueError("%s: pod securityContext.runAsNonRoot must be true" % name)
    for c in spec.get("initContainers", []) + spec["containers"]:
        csc = c.get("securityContext") or {}
        for k, v in (("runAsUser", uid), ("runAsGroup", gid)):
            if k in csc and csc[k] != v:
                raise ValueError("%s/%s: %s %r differs from the pod's %r" % (name, c["name"], k, csc[k], v))
    return uid, gid, fsg


def lay_out(volume, objects, root, fsg, mode=None):
    """Creates ROOT/<volume name> as the kubelet would (FSG None: a pod without fsGroup, whose
    volume files stay root:root with their mode); MODE overrides defaultMode.  Returns its path."""
    path = os.path.join(root, volume["name"])
    group, mask = (0, 0) if fsg is None else (fsg, KUBELET_RO_MASK)
    os.mkdir(path)
    if "emptyDir" in volume:
        os.chown(path, 0, group)
        os.chmod(path, 0o2777)
        return path
    if "secret" in volume:
        src = volume["secret"]
        mode = src.get("defaultMode", 0o644) if mode is None else mode
        data = objects[("Secret", src["secretName"])].get("data", {})
        files = {k: base64.b64decode(v) for k, v in data.items()}
    elif "configMap" in volume:
        src = volume["configMap"]
        mode = src.get("defaultMode", 0o644) if mode is None else mode
        data = objects[("ConfigMap", src["name"])].get("data", {})
        files = {k: v.encode() for k, v in data.items()}
    else:
        raise ValueError("volume %s: type not modelled" % volume["name"])
    # The kubelet writes the files into a timestamped directory behind ..data symlinks.
    data_dir = os.path.join(path, "..2026_01_01_00_00_00.000000000")
    os.mkdir(data_dir)
    os.symlink(os.path.basename(data_dir), os.path.join(path, "..data"))
    for k, v in files.items():
        f = os.path.join(data_dir, k)
        with open(f, "wb") as out:
            out.write(v)
        os.chown(f, 0, group)
        os.chmod(f, mode | mask)
        os.symlink(os.path.join("..data", k), os.path.join(path, k))
    os.chown(data_dir, 0, group)
    os.chmod(data_dir, 0o2755)
    os.chown(path, 0, group)
    os.chmod(path, 0o3777)
    return path


ROOT = None  # --root: the image's root filesystem


def run_in_pod(container, vols, uid, gid, fsg, argv):
    """Runs ARGV with CONTAINER's mounts in a new mount namespace as uid:gid with fsGroup as
    supplementary group (FSG None: none, a pod without fsGroup); chrooted into ROOT if set."""
    top = ROOT or ""
    # A tmpfs on /run keeps the mountPaths under /run (the secrets) off the host's /run.
    script = ["set -e", 'mount -t tmpfs -o mode=755 nc-pod-run "%s/run"' % top]
    for m in container.get("volumeMounts", []):
        host, at = vols[m["name"]], top + m["mountPath"]
        script.append('mkdir -p "%s" && mount --bind "%s" "%s"' % (at, host, at))
        if m.get("readOnly"):
            script.append('mount -o remount,bind,ro "%s"' % at)
    if ROOT:
        script.append('exec chroot --userspec=%d:%d --groups=%d "%s" "$@"'
                      % (uid, gid, gid if fsg is None else fsg, ROOT))
    else:
        script.append(
            'exec setpriv --reuid=%d --regid=%d %s --inh-caps=-all "$@"'
            % (uid, gid, "--clear-groups" if fsg is None else "--groups=%d" % fsg)
        )
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(script), "sh"] + argv,
        capture_output=True,
        text=True,
        timeout=60,
    )


def main():
    global ROOT
    if len(sys.argv) == 4 and sys.argv[1] == "--root":
        ROOT, rendered = os.path.abspath(sys.argv[2]), sys.argv[3]
        bin_dir = templates = copy_secrets = None
    elif len(sys.argv) == 5:
        rendered, bin_dir, templates, copy_secrets = sys.argv[1:]
    else:
        print(__doc__)
        return 64
    if os.geteuid() != 0:
        print("check_pod_secrets: SKIP: needs root (chown, mount namespace, setpriv)")
        return 77
    with open(rendered) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    objects = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    if not deployments:
        return fail("no Deployment in %s" % rendered)
    bad = 0
    created = [d for d in ("/usr/share/noticecast/templates", "/usr/share/noticecast", "/etc/noticecast")
               if not os.path.exists(d)]
    try:
        bad = check_all(deployments, objects, bin_dir, templates, copy_secrets)
    finally:
        for d in created:  # the mount points made on the host, if they are still empty
            try:
                os.rmdir(d)
            except OSError:
                pass
    if not bad:
        print("check_pod_secrets: %d Deployment(s) OK" % len(deployments))
    return bad


def check_all(deployments, objects, bin_dir, templates, copy_secrets):
    bad = 0
    for dep in deployments:
        name = dep["metadata"]["name"]
        spec = dep["spec"]["template"]["spec"]
        try:
            uid, gid, fsg = pod_ids(name, spec)
        except ValueError as e:
            bad |= fail(str(e))
            continue
        # Not under /tmp: the pods mount an emptyDir there, which would hide it.
        scratch = tempfile.mkdtemp(prefix="nc-pod-", dir="/var/tmp")
        os.chmod(scratch, 0o755)
        try:
            vols = {v["name"]: lay_out(v, objects, scratch, fsg) for v in spec.get("volumes", [])}
            # The image's paths: the templates directory and the init container's script.
            extra = {"templates": templates}
            for c in spec.get("initContainers", []):
                argv = [copy_secrets or c["command"][0]] + c["command"][1:] + c.get("args", [])
                r = run_in_pod(c, vols, uid, gid, fsg, argv)
                if r.returncode != 0:
                    bad |= fail("%s/%s: exit %d: %s" % (name, c["name"], r.returncode, r.stderr.strip()))
                    continue
                print("check_pod_secrets: %s/%s: %s" % (name, c["name"], r.stdout.strip()))
            daemon = spec["containers"][0]
            prog = daemon["command"][0]
            mounts = dict(daemon)
            if not ROOT:
                prog = os.path.join(bin_dir, os.path.basename(prog))
                mounts["volumeMounts"] = list(daemon.get("volumeMounts", [])) + [
                    {"name": "templates", "mountPath": "/usr/share/noticecast/templates", "readOnly": True}
                ]
            vols.update(extra)
            r = run_in_pod(mounts, vols, uid, gid, fsg, [prog, "-n"] + daemon.get("args", []))
            out = (r.stdout + r.stderr).strip()
            if r.returncode != 0 or "configuration OK" not in r.stdout:
                bad |= fail("%s: %s -n: exit %d: %s" % (name, os.path.basename(prog), r.returncode, out))
            else:
                print("check_pod_secrets: %s: uid %d gid %d fsGroup %d: %s -n: %s"
                      % (name, uid, gid, fsg, os.path.basename(prog), out))
            # Control: the same daemon reading the Secret volume itself.
            secret_mounts = [m for c in spec.get("initContainers", []) for m in c.get("volumeMounts", [])
                             if "secret" in next(v for v in spec["volumes"] if v["name"] == m["name"])]
            if not secret_mounts:
                bad |= fail("%s: no init container mounts a Secret volume" % name)
                continue
            direct = dict(mounts)
            copy_dest = [m for m in daemon["volumeMounts"] if m["mountPath"].startswith("/run/secrets/")]
            direct["volumeMounts"] = [m for m in mounts["volumeMounts"] if m not in copy_dest] + [
                dict(m, mountPath=cd["mountPath"]) for m in secret_mounts for cd in copy_dest
            ]
            r = run_in_pod(direct, vols, uid, gid, fsg, [prog, "-n"] + daemon.get("args", []))
            out = (r.stdout + r.stderr).strip()
            if r.returncode != 78 or "accessible by group" not in out:
                bad |= fail("%s: control (Secret volume read directly) should be refused with exit 78,"
                            " got exit %d: %s" % (name, r.returncode, out))
            else:
                print("check_pod_secrets: %s: control, Secret volume read directly: exit 78: %s"
                      % (name, out.splitlines()[-1]))
            # Control 2: the old manifest's way, defaultMode 0400 and no fsGroup: root's file.
            for m in secret_mounts:
                v = next(v for v in spec["volumes"] if v["name"] == m["name"])
                vols[m["name"]] = lay_out(dict(v, name=v["name"] + "-nofsgroup"), objects, scratch, None, 0o400)
            r = run_in_pod(direct, vols, uid, gid, None, [prog, "-n"] + daemon.get("args", []))
            out = (r.stdout + r.stderr).strip()
            if r.returncode != 78 or "Permission denied" not in out:
                bad |= fail("%s: control (0400, no fsGroup) should fail with exit 78 and EACCES,"
                            " got exit %d: %s" % (name, r.returncode, out))
            else:
                print("check_pod_secrets: %s: control, defaultMode 0400 without fsGroup: exit 78: %s"
                      % (name, out.splitlines()[-1]))
        finally:
            shutil.rmtree(scratch)
    return bad


if __name__ == "__main__":
    sys.exit(main())
