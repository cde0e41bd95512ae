#!/bin/sh
# scripts/get-cifar10.sh offline: on archives this test makes (the real
# files' names and sizes, zeros inside), the checksum is checked before
# anything is unpacked, a complete tree is unpacked into place, a second run
# finds it complete, incomplete or corrupt archives are refused, and a
# download that cannot happen says what to do instead.
# Usage: get_cifar10.sh SOURCE_DIR
set -eu
script=$1/scripts/get-cifar10.sh
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

mkdir -p "$dir/src/cifar-10-batches-bin"
for f in data_batch_1.bin data_batch_2.bin data_batch_3.bin data_batch_4.bin data_batch_5.bin test_batch.bin; do
    truncate -s 30730000 "$dir/src/cifar-10-batches-bin/$f"
done
echo airplane > "$dir/src/cifar-10-batches-bin/batches.meta.txt"
tar -czf "$dir/good.tar.gz" -C "$dir/src" cifar-10-batches-bin
rm "$dir/src/cifar-10-batches-bin/test_batch.bin"
tar -czf "$dir/incomplete.tar.gz" -C "$dir/src" cifar-10-batches-bin
head -c 100000 "$dir/good.tar.gz" > "$dir/truncated.tar.gz"
good=$(md5sum < "$dir/good.tar.gz" | awk '{ print $1 }')

# the published checksum: this archive is not the real one, and nothing is unpacked
if sh "$script" "$dir/a" --archive "$dir/good.tar.gz" > "$dir/out" 2>&1; then fail "accepted a wrong checksum"; fi
grep -q "the published one is c32a1d4ab5d03f1284b67883e8d87530" "$dir/out" || { cat "$dir/out"; fail "no checksum message"; }
[ ! -e "$dir/a/cifar-10-batches-bin" ] || fail "unpacked an archive that failed its checksum"
[ -f "$dir/good.tar.gz" ] || fail "deleted the user's archive"

# a matching checksum: unpacked, every file at its size
RNC_CIFAR10_MD5=$good sh "$script" "$dir/a" --archive "$dir/good.tar.gz" | tee "$dir/out"
grep -q "train with --data $dir/a/cifar-10-batches-bin" "$dir/out" || fail "no --data line"
for f in data_batch_1.bin data_batch_5.bin test_batch.bin; do
    [ "$(wc -c < "$dir/a/cifar-10-batches-bin/$f")" -eq 30730000 ] || fail "$f not unpacked"
done
[ -z "$(ls -A "$dir/a" | grep -v '^cifar-10-batches-bin$')" ] || fail "left temporary files: $(ls -A "$dir/a")"
# again: already complete, no archive needed
sh "$script" "$dir/a" | grep -q "already complete" || fail "a second run did not see the tree"

# an archive without test_batch.bin, and a truncated one (their checksums given)
if RNC_CIFAR10_MD5=$(md5sum < "$dir/incomplete.tar.gz" | awk '{ print $1 }') \
   sh "$script" "$dir/b" --archive "$dir/incomplete.tar.gz" > "$dir/out" 2>&1; then fail "accepted an incomplete archive"; fi
grep -q "does not hold cifar-10-batches-bin/" "$dir/out" || { cat "$dir/out"; fail "no message for an incomplete archive"; }
[ ! -e "$dir/b/cifar-10-batches-bin" ] || fail "an incomplete archive was unpacked into place"
if RNC_CIFAR10_MD5=$(md5sum < "$dir/truncated.tar.gz" | awk '{ print $1 }') \
   sh "$script" "$dir/c" --archive "$dir/truncated.tar.gz" > "$dir/out" 2>&1; then fail "accepted a truncated archive"; fi
grep -q "cannot unpack" "$dir/out" || { cat "$dir/out"; fail "no message for a truncated archive"; }
[ ! -e "$dir/c/cifar-10-batches-bin" ] || fail "a truncated archive was unpacked into place"

# no network (a port nothing listens on): the download fails and says what to do
if RNC_CIFAR10_URL=http://127.0.0.1:9/cifar-10-binary.tar.gz sh "$script" "$dir/d" > "$dir/out" 2>&1; then
    fail "a download from nowhere succeeded"
fi
cat "$dir/out"
grep -q -- "--archive cifar-10-binary.tar.gz" "$dir/out" || fail "no advice without a network"
[ ! -e "$dir/d/cifar-10-binary.tar.gz.part" ] && [ ! -e "$dir/d/cifar-10-binary.tar.gz" ] || fail "left a partial download"
if sh "$script" > /dev/null 2>&1; then fail "ran without DIR"; fi
echo "1 passed, 0 failed"
