#!/usr/bin/env bash
# format_check.sh REPO: every C source and header tracked by git is formatted with the
# committed .clang-format (STYLE.md, convention 14).
set -euo pipefail
cd "$1"
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find libcommon services tests -name '*.[ch]')
bad=0
for f in $files; do
    if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
        echo "not formatted: $f (run clang-format -i $f)" >&2
        bad=$((bad + 1))
    fi
done
total=$(wc -w <<<"$files")
echo "$((total - bad)) passed, $bad failed"
exit $((bad > 0))
