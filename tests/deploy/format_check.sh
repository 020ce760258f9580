#!/usr/bin/env bash
# format_check.sh REPO: every C source and header tracked by git is formatted with the
# committed .clang-format (LLVM base, 4-space indent, 100 columns, Linux braces).
set -euo pipefail
cd "$1"
mapfile -t files < <(git ls-files '*.c' '*.h' 2>/dev/null || find libcommon services tests -name '*.[ch]')
bad=$(clang-format --dry-run -Werror "${files[@]}" 2>&1 | grep -o '^[^:]*\.[ch]:' | sort -u || true)
nbad=$(grep -c . <<<"$bad" || true)
[[ -z $bad ]] && nbad=0
for f in $bad; do echo "not formatted: ${f%:} (run clang-format -i ${f%:})" >&2; done
echo "$((${#files[@]} - nbad)) passed, $nbad failed"
exit $((nbad > 0))
