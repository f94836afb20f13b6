#!/usr/bin/env python3
"""Checks what the image build sends and copies: the .containerignore at the repository root.

usage: check_context.py [--podman] REPO

1. Applies .containerignore to the files under REPO (pattern rules of the Docker/Podman
   ignore file: paths relative to the context, `*` and `?` within one path element, `**` any
   number of elements, a matched directory excludes all below it, `!` re-includes) and fails
   if anything under .git/, var/, build/ or a secret-looking path would be sent.
2. Fails if a path that must never be sent (.git/config, var/demo/secrets/..., a *.key)
   would be, using sample paths, so the check holds even on a tree without var/.
3. Fails if a source of a COPY in deploy/container/Containerfile would be excluded.
4. With --podman, if podman runs here: builds `FROM scratch` + `COPY . /ctx/` from REPO (no
   registry needed) and compares the files podman really put in the layer with step 1's list.
Exit 0 good, 1 a check failed.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

MUST_EXCLUDE = [
    ".git/config",
    ".git/objects/ab/cdef",
    "var/demo/secrets/pe-pcm",
    "var/demo/unsubscribe.key",
    "build/noticecast",
    "build-asan/noticecast-mailer",
    "deploy/kubernetes/overlays/example/secrets/unsubscribe.key",
    "config/tls/client.key",
    "common/nc_util.o",
]
NEVER_SENT = re.compile(r"(^|/)(\.git|var|build|build-asan|secrets)(/|$)|\.(key|pem|p12|password)$")


def to_regex(pattern):
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c))
        i += 1
    return re.compile(out + "$")


def load_rules(repo):
    rules = []
    with open(os.path.join(repo, ".containerignore")) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            neg = line.startswith("!")
            pat = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
            rules.append((neg, to_regex(pat)))
    return rules


def excluded(path, rules):
    """PATH (relative) is left out if the last rule matching it or a parent excludes it."""
    parts = path.split("/")
    for n in range(1, len(parts) + 1):
        prefix = "/".join(parts[:n])
        state = False
        for neg, rx in rules:
            if rx.match(prefix):
                state = not neg
        if state:
            return True
    return False


def context_files(repo, rules):
    sent = []
    for root, dirs, files in os.walk(repo):
        rel_root = os.path.relpath(root, repo)
        rel_root = "" if rel_root == "." else rel_root + "/"
        dirs[:] = [d for d in dirs if not excluded(rel_root + d, rules)]
        for f in files:
            p = rel_root + f
            if not excluded(p, rules):
                sent.append(p)
    return sorted(sent)


def copy_sources(repo):
    srcs = []
    with open(os.path.join(repo, "deploy/container/Containerfile")) as f:
        text = f.read().replace("\\\n", " ")
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            srcs += [w.rstrip("/") for w in words[1:-1] if not w.startswith("--")]
    return srcs


def podman_files(repo):
    if not shutil.which("podman"):
        return None, "podman not installed"
    tag = "localhost/noticecast-context-check:%d" % os.getpid()  # unique: other trees may run it too
    with tempfile.TemporaryDirectory() as d:
        cf = os.path.join(d, "Containerfile")
        with open(cf, "w") as f:
            f.write("FROM scratch\nCOPY . /ctx/\n")
        r = subprocess.run(["podman", "build", "-q", "-f", cf, "-t", tag, repo], capture_output=True, text=True)
        if r.returncode:
            return None, "podman build failed: " + r.stderr.strip()[-300:]
    r = subprocess.run(["podman", "create", tag, "none"], capture_output=True, text=True)
    if r.returncode:
        return None, "podman create failed: " + r.stderr.strip()[-300:]
    cid = r.stdout.strip()
    try:
        tar = subprocess.run(["podman", "export", cid], capture_output=True, check=True).stdout
        names = subprocess.run(["tar", "-t"], input=tar, capture_output=True, check=True).stdout.decode()
    finally:
        subprocess.run(["podman", "rm", cid], capture_output=True)
        subprocess.run(["podman", "rmi", tag], capture_output=True)
    files = sorted(n[len("ctx/"):] for n in names.splitlines() if n.startswith("ctx/") and not n.endswith("/"))
    return files, None


def main():
    args = sys.argv[1:]
    use_podman = "--podman" in args
    args = [a for a in args if a != "--podman"]
    if len(args) != 1:
        print(__doc__)
        return 64
    repo = os.path.abspath(args[0])
    rules = load_rules(repo)
    bad = []
    sent = context_files(repo, rules)
    bad += ["sent: " + p for p in sent if NEVER_SENT.search(p)]
    bad += ["would be sent: " + p for p in MUST_EXCLUDE if not excluded(p, rules)]
    for src in copy_sources(repo):
        if excluded(src, rules) or not os.path.exists(os.path.join(repo, src)):
            bad.append("COPY source missing from the context: " + src)
    print("check_context: %d files in the build context (%d kB); none under .git/, var/, build/"
          % (len(sent), sum(os.path.getsize(os.path.join(repo, p)) for p in sent) // 1024)
          if not bad else "check_context: %d files in the build context" % len(sent))
    if use_podman:
        real, why = podman_files(repo)
        if real is None:
            print("check_context: podman comparison not done: " + why)
        elif real != sent:
            extra = sorted(set(real) - set(sent))[:10]
            missing = sorted(set(sent) - set(real))[:10]
            bad.append("podman's context differs from this model: extra %s, missing %s" % (extra, missing))
        else:
            print("check_context: podman build put the same %d files in the layer" % len(real))
    for b in bad:
        print("check_context: FAIL: " + b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
