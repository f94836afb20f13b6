#!/bin/sh
# copy-secrets SRC DEST: the init container of the Kubernetes Deployments (docs/kubernetes.md).
# Copies each file of the Secret volume SRC into DEST (an emptyDir in memory) as mode 0400,
# owned by the user this runs as: the daemons refuse a secret file that group or others can
# read, and the kubelet makes every file of a Secret volume 0440 once the pod has an fsGroup.
# Installed in the image as /usr/libexec/noticecast/copy-secrets.
set -eu
[ $# -eq 2 ] || {
	echo "usage: copy-secrets SRC DEST" >&2
	exit 64
}
src=$1 dest=$2
umask 077
n=0
for f in "$src"/*; do
	# The volume's own ..data and ..TIMESTAMP entries start with a dot: the glob skips them.
	[ -f "$f" ] || continue
	name=${f##*/}
	# Write then rename, so a daemon never sees half a file.
	rm -f "$dest/.$name.tmp"
	cp "$f" "$dest/.$name.tmp"
	chmod 0400 "$dest/.$name.tmp"
	mv -f "$dest/.$name.tmp" "$dest/$name"
	n=$((n + 1))
done
[ "$n" -gt 0 ] || {
	echo "copy-secrets: no files in $src" >&2
	exit 1
}
echo "copy-secrets: $n file(s) from $src to $dest, mode 0400"
