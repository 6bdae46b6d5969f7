#!/bin/sh
# RUSTC_WRAPPER for sccache under cargo guarded:
#   RUSTC_WRAPPER=/opt/cargo-guarded/sccache-wrapper.sh
#
# sccache puts every CARGO_* variable of rustc's environment into its cache key (all but
# CARGO_MAKEFLAGS). Cargo passes its own environment on to rustc, so the per-job CARGO_TARGET_DIR
# and CARGO_GUARDED_* that cargo guarded sets would make every job's keys unique, and no job would
# ever hit another job's entries. rustc reads none of them, so they are dropped here, and sccache
# (found on PATH) sees the same key for the same crate in every job.
#
# Start the sccache server before `cargo guarded` (`sccache --start-server` in an earlier step):
# a server that the build itself starts is part of the build's process tree, and cargo guarded
# ends that tree when the command exits, so it would be started anew by every run.
for var in $(env | sed -n 's/^\(CARGO_GUARDED_[A-Za-z0-9_]*\)=.*/\1/p'); do
  unset "$var"
done
unset CARGO_TARGET_DIR CARGO_BUILD_BUILD_DIR CARGO_LLVM_COV_TARGET_DIR
exec sccache "$@"
