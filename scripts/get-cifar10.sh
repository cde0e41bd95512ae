#!/bin/sh
# Fetches CIFAR-10, the binary version, from its authors' page into DIR,
# checks the archive against its published MD5 and unpacks it:
#
#   sh scripts/get-cifar10.sh DIR                    # DIR/cifar-10-batches-bin/
#   sh scripts/get-cifar10.sh DIR --archive FILE     # an archive you already have
#
# then train with --data DIR/cifar-10-batches-bin.  Without a network the
# download fails and says so; fetch cifar-10-binary.tar.gz (162 MB) where
# there is one and give it with --archive: the same checks apply.  Nothing
# is left half-done: the download goes to a .part file, the archive is
# checked before it is unpacked, and unpacked into a temporary folder that
# is renamed into place once every file has its published size.
# RNC_CIFAR10_URL and RNC_CIFAR10_MD5 replace the address and the checksum
# (a mirror; the tests use them).  Needs curl or wget, md5sum, tar, gzip.
set -eu
URL=${RNC_CIFAR10_URL:-https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz}
MD5=${RNC_CIFAR10_MD5:-c32a1d4ab5d03f1284b67883e8d87530}
FILES="data_batch_1.bin data_batch_2.bin data_batch_3.bin data_batch_4.bin data_batch_5.bin test_batch.bin"
BYTES=30730000   # 10,000 records of 1 + 3,072 bytes

usage() { echo "usage: scripts/get-cifar10.sh DIR [--archive FILE]" >&2; exit 2; }
[ $# -eq 1 ] || [ $# -eq 3 ] || usage
dir=$1
archive=
if [ $# -eq 3 ]; then
    [ "$2" = --archive ] || usage
    archive=$3
    [ -f "$archive" ] || { echo "get-cifar10: $archive: no such file" >&2; exit 1; }
fi
out=$dir/cifar-10-batches-bin

complete() {   # DIR/cifar-10-batches-bin with every file at its size
    for f in $FILES; do
        [ -f "$1/$f" ] && [ "$(wc -c < "$1/$f")" -eq $BYTES ] || return 1
    done
}

if complete "$out"; then
    echo "get-cifar10: $out is already complete; train with --data $out"
    exit 0
fi
mkdir -p "$dir"

downloaded=
if [ -z "$archive" ]; then
    archive=$dir/cifar-10-binary.tar.gz
    if [ ! -f "$archive" ]; then
        echo "get-cifar10: downloading $URL (162 MB)..."
        if command -v curl > /dev/null; then
            if [ -t 2 ]; then show=--progress-bar; else show=-sS; fi
            get() { curl -fL $show --retry 2 --connect-timeout 20 -o "$1" "$URL"; }
        elif command -v wget > /dev/null; then
            get() { wget -q --tries=2 --timeout=20 -O "$1" "$URL"; }
        else
            echo "get-cifar10: needs curl or wget to download (apt-get install curl); or download" >&2
            echo "  $URL elsewhere and run: sh scripts/get-cifar10.sh $dir --archive cifar-10-binary.tar.gz" >&2
            exit 1
        fi
        if ! get "$archive.part"; then
            rm -f "$archive.part"
            echo "get-cifar10: cannot download $URL (no network?)." >&2
            echo "  Download it where there is one (162 MB) and run:" >&2
            echo "  sh scripts/get-cifar10.sh $dir --archive cifar-10-binary.tar.gz" >&2
            exit 1
        fi
        mv "$archive.part" "$archive"
        downloaded=1
    fi
fi

sum=$(md5sum < "$archive" | awk '{ print $1 }')
if [ "$sum" != "$MD5" ]; then
    echo "get-cifar10: $archive has MD5 $sum, the published one is $MD5:" >&2
    if [ -n "$downloaded" ]; then
        rm -f "$archive"
        echo "  the download is corrupt or incomplete (deleted it; run again)" >&2
    else
        echo "  it is not the CIFAR-10 binary archive, or it is damaged" >&2
    fi
    exit 1
fi
echo "get-cifar10: $archive: MD5 $sum, as published"

tmp=$dir/.get-cifar10.$$
rm -rf "$tmp"
mkdir "$tmp"
trap 'rm -rf "$tmp"' EXIT
if ! tar -xzf "$archive" -C "$tmp" 2> "$tmp.err"; then
    echo "get-cifar10: cannot unpack $archive: $(head -c 300 "$tmp.err")" >&2
    rm -f "$tmp.err"
    exit 1
fi
rm -f "$tmp.err"
if ! complete "$tmp/cifar-10-batches-bin"; then
    echo "get-cifar10: $archive does not hold cifar-10-batches-bin/ with $FILES of $BYTES bytes each" >&2
    exit 1
fi
rm -rf "$out"
mv "$tmp/cifar-10-batches-bin" "$out"
echo "get-cifar10: CIFAR-10 is in $out (50,000 training and 10,000 test images); train with --data $out"
