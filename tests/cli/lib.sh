# lib.sh: what the end-to-end shell tests share. Source it after setting `g4moe`; it makes $scratch (removed
# on exit), counts failures, and provides pass/bad/expect_error and finish.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failures=0
pass() { echo "ok   $1"; }
bad() { echo "FAIL $1"; failures=$((failures + 1)); }

# expect_error NAME EXPECTED_SUBSTRING CMD...: exit code 2 and one stderr line "g4moe: error: ...SUBSTRING...".
expect_error() {
  local name="$1" want="$2"
  shift 2
  "$@" >"$scratch/out" 2>"$scratch/err"
  local rc=$?
  local lines
  lines=$(wc -l <"$scratch/err")
  if [ "$rc" -eq 2 ] && [ "$lines" -eq 1 ] && grep -q "^g4moe: error: .*$want" "$scratch/err"; then
    pass "$name"
  else
    bad "$name (rc=$rc, stderr: $(head -c 400 "$scratch/err"))"
  fi
}

# finish NAME: prints the summary line and returns non-zero on any failure.
finish() {
  echo "$1: $failures failure(s)"
  [ "$failures" -eq 0 ]
}

# expect_final_error NAME EXPECTED_SUBSTRING CMD...: exit code 2, and the last stderr line (after any progress
# output) is the one "g4moe: error: ...SUBSTRING..." line.
expect_final_error() {
  local name="$1" want="$2"
  shift 2
  "$@" >"$scratch/out" 2>"$scratch/err"
  local rc=$?
  if [ "$rc" -eq 2 ] && [ "$(grep -c '^g4moe: error:' "$scratch/err")" -eq 1 ] &&
    tail -n 1 "$scratch/err" | grep -q "^g4moe: error: .*$want"; then
    pass "$name"
  else
    bad "$name (rc=$rc, stderr: $(tail -c 400 "$scratch/err"))"
  fi
}

# stop_after_lines PID FILE LINES SIGNAL: once FILE has LINES lines (at most ~10 s), sends SIGNAL to PID and
# waits for it; the exit status is PID's.
stop_after_lines() {
  local pid="$1" file="$2" lines="$3" signal="$4"
  for _ in $(seq 1 500); do
    [ -s "$file" ] && [ "$(wc -l <"$file")" -ge "$lines" ] && break
    sleep 0.02
  done
  kill -"$signal" "$pid"
  wait "$pid"
}
