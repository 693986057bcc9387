# Shared by bench/b1 and bench/b2 (sourced): the B1 image builder and a
# throw-away sshd. Callers set WORK and IMG.
# shellcheck shell=bash

# build_b1: the B1 image in $IMG (4 GiB GPT: 3.5 GiB ext4 at 1 MiB, 512 MiB swap).
build_b1() {
    echo "building B1 in $IMG ..." >&2
    local tree=$WORK/tree
    rm -rf "$tree"; mkdir -p "$tree/usr" "$tree/var/log" "$tree/data" "$tree/doc"
    # Binaries (~290 MiB) and text (documentation, ~150 MiB).
    cp -a /usr/bin "$tree/usr/bin"
    cp -a /usr/share/doc "$tree/doc/" 2>/dev/null || true
    # A large log: 3 million lines.
    awk 'BEGIN { for (i = 0; i < 3000000; i++)
        printf "Nov 26 10:%02d:%02d seed sshd[%d]: Accepted publickey for user%d from 10.0.%d.%d port %d\n",
        (i/60)%60, i%60, 1000+i%30000, i%97, i%256, (i*7)%256, 30000+i%30000 }' > "$tree/var/log/auth.log"
    # ~700 MiB of incompressible data.
    head -c $((700 << 20)) /dev/urandom > "$tree/data/random.bin"
    du -sh "$tree" >&2
    # Garbage everywhere first, so free blocks are not conveniently zero.
    head -c $((4 << 30)) /dev/urandom > "$IMG.tmp"
    printf 'label: gpt\nstart=2048, size=3582MiB, type=linux\nsize=512MiB, type=swap\n' \
        | sfdisk -q --no-reread --no-tell-kernel "$IMG.tmp" >/dev/null
    mke2fs -q -F -t ext4 -E offset=1048576,nodiscard -d "$tree" "$IMG.tmp" 3582M
    # No partition device nodes without udev: make the swap in a file.
    head -c $((512 << 20)) /dev/zero > "$WORK/swap.part"
    mkswap -q "$WORK/swap.part" >/dev/null
    dd if="$WORK/swap.part" of="$IMG.tmp" bs=1M seek=3583 conv=notrunc status=none
    rm -f "$WORK/swap.part"
    mv "$IMG.tmp" "$IMG"
    rm -rf "$tree"
}

# start_sshd ADDR PORT [PREFIX...]: sshd on ADDR:PORT with throw-away keys in
# $WORK/ssh, run under PREFIX (e.g. ip netns exec NS). Sets SSHD_PID and SSH
# (the client command line, as one string to word-split).
start_sshd() {
    local addr=$1 port=$2; shift 2
    local S=$WORK/ssh; mkdir -p "$S" /run/sshd; chmod 700 "$S"
    [ -f "$S/host" ] || ssh-keygen -q -t ed25519 -N '' -f "$S/host"
    [ -f "$S/client" ] || ssh-keygen -q -t ed25519 -N '' -f "$S/client"
    cp "$S/client.pub" "$S/authorized_keys"; chmod 600 "$S/authorized_keys"
    "$@" /usr/sbin/sshd -D -e -p "$port" -o ListenAddress="$addr" -h "$S/host" \
        -o AuthorizedKeysFile="$S/authorized_keys" -o PermitRootLogin=prohibit-password \
        -o StrictModes=no -o PidFile=none 2>"$WORK/sshd.log" &
    # shellcheck disable=SC2034 # read by the caller's cleanup
    SSHD_PID=$!
    sleep 0.5
    # shellcheck disable=SC2034 # used by the caller
    SSH="ssh -p $port -i $S/client -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR root@$addr"
}
