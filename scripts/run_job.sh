# Sourced by the training scripts: run NAME ARGS... runs "$train ARGS --out $out/NAME -q", logging start, end or
# failure with UTC times; a failed job returns 1 and the script goes on with the next one.
run() {
    local name=$1; shift
    echo "=== $name: $(date -u +%FT%TZ) $train $*"
    if $train "$@" --out "$out/$name" -q; then
        echo "=== $name done: $(date -u +%FT%TZ)"
    else
        echo "=== $name FAILED (exit $?): $(date -u +%FT%TZ)"
        return 1
    fi
}
