#!/bin/bash
# compare.sh: side-by-side benchmark of ssehub, Nchan and the seed's Go design
# (bench/peers/gohub) behind nginx on loopback. See README.md.
#   bench/compare.sh            full suite (~15 min): RESULTS.md, plots/, results/
#   bench/compare.sh --quick    ~2 min smoke run (results in a temp dir)
#   bench/compare.sh --help     options
exec /usr/bin/python3 "$(dirname "$0")/compare.py" "$@"
