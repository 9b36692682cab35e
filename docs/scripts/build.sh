#!/usr/bin/env bash
# Build the documentation site: generate every output and figure, then mkdocs in strict mode.
#   pip install -e '.[docs,test]' && bash docs/scripts/build.sh      (site in ./site)
set -euo pipefail
cd "$(dirname "$0")/../.."
python docs/scripts/generate.py
NO_MKDOCS_2_WARNING=1 python -m mkdocs build --strict "$@"
